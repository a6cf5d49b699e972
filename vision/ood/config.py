"""The ood pipeline's config: its sections as dataclasses, ``DEFAULTS`` and ``check``.

Imports no torch, so ``lorakit train ood`` checks a config (unknown sections and keys,
values of the wrong type, bad choices) within a second, before the pipeline module loads.
The pipeline (``pipeline.py``) runs the same ``check`` first, then what needs torch (the
adapter method against the registry).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lorakit.data.runtime.options import TrainerOptions
from lorakit.data.sections import (
    RuntimeConfig,
    backbone_defaults,
    check_sections,
    typed_section,
)
from lorakit.data.vocabulary import Rename
from lorakit.data.weight_methods import (
    REPLACEMENT_METHODS,
    is_replacement,
)

WHOLE_MODEL_METHODS = ("linear_probe", "full")  # beside the registry's adapter methods

KINDS = ("tiny_vit", "torchvision", "open_clip")



TINY_IMAGE_SIZE = 32



@dataclass
class BackboneConfig:
    """The ``backbone:`` config section (see the module docstring for ``kind``).

    checkpoint: local weights (tiny_vit: a lorakit checkpoint; torchvision: a state_dict;
        open_clip: an open_clip state_dict). pretrain_if_missing (tiny_vit only): build
        the checkpoint with ``pretrain_tiny`` when the file does not exist yet.
    head_init: ``auto`` | ``keep`` (checkpoint head, classes must match) | ``zeroshot``
        (open_clip text head) | ``prototype`` (normalised ID class means) | ``zero``.
    """

    kind: str = "tiny_vit"
    arch: str = "resnet18"
    model: str = "lorakit-tiny-vit"
    pretrained: str | None = None
    checkpoint: str | None = None
    pretrain_if_missing: bool = False
    pretrain_steps: int = 400
    head_init: str = "auto"
    seed: int = 0  # random init (tiny configs, fresh heads) is reproducible: eval rebuilds it
    image_size: int | None = None  # tiny_vit: 32; torchvision/open_clip: the architecture's
    patch_size: int = 4
    width: int = 64
    depth: int = 4
    heads: int = 4
    conv_stem: bool = False
    templates: list[str] = field(default_factory=lambda: ["a photo of a {}.", "a drawing of a {}."])
    # a quantized base: {bits, scheme, group_size, targets} as in every pipeline ({}: float)
    quantize: dict | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "tiny_vit" and self.image_size is None:
            self.image_size = TINY_IMAGE_SIZE

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"backbone.kind must be one of {KINDS}, got {self.kind!r}")
        if self.head_init not in ("auto", "keep", "zeroshot", "prototype", "zero"):
            raise ValueError(f"backbone.head_init: unknown value {self.head_init!r}")


@dataclass
class MethodConfig:
    """The ``adapter:`` section (``method:`` before, whose ``name`` is now ``method``).
    ``hyper`` holds extra fields of the lorakit method config (e.g. largo's ``gamma_rel``,
    ``mu``, ``component``); ``targets: auto`` uses the backbone's default targets."""

    method: str = "largo"
    r: int = 4
    alpha: float = 4.0
    dropout: float = 0.0
    targets: str | list[str] = "auto"
    slices: list[str] = field(default_factory=lambda: ["q", "k", "v"])
    train_head: bool = True
    hyper: dict = field(default_factory=dict)

    def validate_light(self) -> None:
        """The method name is checked against the registry (which imports torch) in
        ``validate``, by the pipeline."""
        from lorakit.data.method_fields import (  # no torch
            check_fields,
            check_method,
            check_replacement_fields,
        )

        if not self.method or not isinstance(self.method, str):
            raise ValueError(f"adapter.method must be a method name, got {self.method!r}")
        check_method(self.method, also=(*WHOLE_MODEL_METHODS, *REPLACEMENT_METHODS))
        if is_replacement(self.method):  # r and alpha are this section's; the rest in hyper
            check_replacement_fields(self.method, self.hyper, "adapter.hyper")
            if self.dropout:
                raise ValueError(f"adapter.dropout: {self.method} has no dropout; set it to 0")
        elif self.method not in WHOLE_MODEL_METHODS:
            check_fields(self.method, self.hyper, "adapter.hyper")

    def validate(self) -> None:
        from lorakit.core import list_methods  # the method registry imports torch

        methods = (*WHOLE_MODEL_METHODS, *REPLACEMENT_METHODS, *list_methods())
        if self.method not in methods:
            raise ValueError(f"adapter.method must be one of {methods}, got {self.method!r}")


@dataclass
class OptimConfig:
    """The ``optim:`` section: AdamW, warm-up fraction, batch size, flips as augmentation."""

    lr: float = 1e-3
    head_lr: float | None = None  # default: lr
    weight_decay: float = 0.0
    batch_size: int = 64
    warmup: float = 0.1
    flip: bool = True
    num_workers: int = 0


SUITES = ("all", "id", "ood", "corruptions", "wise")



@dataclass
class EvalConfig:
    """The ``eval:`` section.

    ood: extra OOD sets ``[{name, root, class_map}]`` (added to the generated ones).
    corruptions: names / families / ``all``; ``[]`` turns the corruption suite off.
    corruption_per_class: ID test images per class that get corrupted (None: all).
    wise_alphas: WiSE-FT mixing weights evaluated after training (ID + OOD sets).
    baselines: points for the effective-robustness line: run folders (their metrics.json)
        or ``{name, id_accuracy, ood_accuracy}`` dicts.
    """

    batch_size: int = 256
    ood: list = field(default_factory=list)
    corruptions: str | list = "all"
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])  # data.corruptions.SEVERITIES
    corruption_seed: int = 0
    corruption_per_class: int | None = 20
    wise_alphas: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    baselines: list = field(default_factory=list)
    suite: str = "all"


@dataclass
class DataConfig:
    """The ``data:`` section (``shift`` holds ``lorakit.data.shift.ShiftTask`` fields)."""

    kind: str = "shift"
    root: str = "cache/lorakit/ood-shift"
    shift: dict = field(default_factory=dict)
    id_train: str | None = None
    id_test: str | None = None
    ood: list = field(default_factory=list)
    classes: list[str] | None = None


DEFAULTS: dict = {
    "data": asdict(DataConfig()),
    "backbone": backbone_defaults(asdict(BackboneConfig())),
    "adapter": asdict(MethodConfig()),
    "optim": asdict(OptimConfig()),
    "eval": asdict(EvalConfig()),
    "trainer": {"max_steps": 200, "log_every": 10, "checkpoint_every": 100},
    "runtime": {"threads": None},  # torch CPU threads (null: torch's default), as clip and cod
}
SECTIONS = {
    "data": DataConfig,
    "backbone": BackboneConfig,
    "adapter": MethodConfig,
    "optim": OptimConfig,
    "eval": EvalConfig,
    "trainer": TrainerOptions,
    "runtime": RuntimeConfig,
}

# the old section name, read for one release (see lorakit.data.vocabulary)
RENAMED = (Rename("method", "adapter", {"name": "method"}),)


def check(cfg: dict) -> dict:
    """Every section checked without torch; returns the typed sections by name."""
    built = check_sections(cfg, SECTIONS, DEFAULTS)
    data = built["data"]
    if data.kind not in ("shift", "folders"):
        raise ValueError(f"data.kind must be 'shift' or 'folders', got {data.kind!r}")
    if data.kind == "shift":
        from lorakit.data.shift import ShiftTask  # numpy and PIL, no torch

        typed_section(ShiftTask, data.shift, "data.shift")
    if int(built["optim"].batch_size) < 1:
        raise ValueError(f"optim.batch_size must be positive, got {built['optim'].batch_size}")
    return built


def eval_config(cfg: dict, overrides: dict) -> tuple[dict, str]:
    """``lorakit eval ood --set``: ``data.*`` keys point the evaluation at other data;
    ``suite`` picks a part; the rest are ``eval:`` keys. Returns ``(config, suite)``."""
    from lorakit.data.runs import set_dotted

    overrides = dict(overrides)
    for key in [k for k in overrides if k.startswith("data.")]:  # another data split
        set_dotted(cfg, key, overrides.pop(key))
    suite = str(overrides.pop("suite", cfg["eval"].get("suite", "all")))
    cfg["eval"] = {**cfg["eval"], **overrides}
    return cfg, suite
