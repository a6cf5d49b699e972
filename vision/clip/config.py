"""The clip pipeline's config: its sections as dataclasses, ``DEFAULTS`` and ``check``.

Imports no torch, so ``lorakit train clip`` checks a config (unknown sections and keys,
values of the wrong type, bad choices) within a second, before the pipeline module loads.
The pipeline (``pipeline.py``) runs the same ``check`` first; what needs the method
registry (the adapter method's own fields) is checked there, after the heavy imports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lorakit.data.method_fields import check_fields, check_method, check_replacement_fields
from lorakit.data.runtime.options import TrainerOptions
from lorakit.data.sections import (
    RuntimeConfig,
    backbone_defaults,
    check_sections,
    typed_section,
)
from lorakit.data.weight_methods import (
    REPLACEMENT_METHODS,
    is_replacement,
    replacement_hyper,
)


@dataclass
class BackboneConfig:
    """The ``backbone:`` config section.

    name: open_clip architecture (``ViT-B-16``) or a ``TINY_CONFIGS`` key.
    pretrained: open_clip pretrained tag (``openai``, ``laion2b_s34b_b88k``), None (random),
        or ``lorakit-shapes`` (the default: the offline stand-in of ``standin.py``, for
        ``lorakit-tiny-vit`` only).
    checkpoint: local weights file (open_clip/OpenAI state_dict, .bin/.pt/.safetensors);
        takes precedence over ``pretrained``.
    offline: ``"auto"`` (probe the hub for 2 s), true or false.
    """

    name: str = "lorakit-tiny-vit"
    pretrained: str | None = "lorakit-shapes"
    checkpoint: str | None = None
    precision: str = "fp32"
    cache_dir: str | None = None
    offline: bool | str = "auto"
    # a quantized base: {bits, scheme, group_size, targets} as in every pipeline ({}: float)
    quantize: dict | None = field(default_factory=dict)


@dataclass
class OptimConfig:
    """The ``optim:`` section. ``batch_size`` is the global batch (split across DDP ranks)."""

    lr: float = 2e-4
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 32
    warmup_steps: int = 0
    schedule: str = "cosine"  # or "constant"

    def validate(self) -> None:
        # YAML reads "1e-3" (no dot) as a string: coerce, naming the field when it fails
        for name, kind in (
            ("lr", float),
            ("weight_decay", float),
            ("batch_size", int),
            ("warmup_steps", int),
        ):
            try:
                setattr(self, name, kind(getattr(self, name)))
            except (TypeError, ValueError):
                raise ValueError(
                    f"optim.{name} must be a number, got {getattr(self, name)!r}"
                ) from None
        self.betas = tuple(float(b) for b in self.betas)
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"optim.schedule must be cosine or constant, got {self.schedule!r}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be positive, got {self.lr}")


@dataclass
class DataConfig:
    """The ``data:`` section: an ImageFolder ``root`` (train/ and test/ class folders), a
    CoOp ``split_file`` (+ ``image_root``), or ``generate`` (a ShapesSpec dict)."""

    root: str | None = None
    split_file: str | None = None
    image_root: str | None = None
    generate: dict | None = None
    shots: int = 4
    seed: int = 1
    base_novel: bool = False  # train on the first half of the classes, test base and novel
    heldout: dict | None = None  # {root | generate}: a second dataset for zero-shot retention
    workers: int = 0


@dataclass
class HeadConfig:
    """The ``head:`` section: prompt templates, and the logit scale (None: the model's)."""

    templates: str | list = "clip"
    logit_scale: float | None = None


@dataclass
class EvalConfig:
    batch_size: int = 64


TOWERS = ("both", "vision", "text")
MODULES = ("q", "k", "v", "o", "mlp")

DEFAULTS: dict = {
    "backbone": backbone_defaults(asdict(BackboneConfig())),
    "data": {
        "root": None,  # ImageFolder root holding train/ and test/ class folders
        "split_file": None,  # or a CoOp split_*.json (+ image_root)
        "image_root": None,
        "generate": None,  # a ShapesSpec dict: generate the dataset into root first
        "shots": 4,
        "seed": 1,
        "base_novel": False,  # train on the first half of the classes, test base and novel
        "heldout": None,  # {root | generate}: a second dataset for zero-shot retention
        "workers": 0,
    },
    "head": {"templates": "clip", "logit_scale": None},  # None: the model's own scale
    "adapter": {
        "method": "lora",
        "r": 2,
        "alpha": 1.0,
        "dropout": 0.25,
        "towers": "both",
        "modules": ["q", "k", "v"],
    },
    "optim": {
        "lr": 2e-4,
        "weight_decay": 1e-2,
        "batch_size": 32,
        "warmup_steps": 0,
        "schedule": "cosine",
    },
    "trainer": {"max_steps": None},  # None: CLIP-LoRA's 500 x shots
    "eval": {"batch_size": 64},
    "runtime": {"threads": None},  # torch CPU threads (1 is steadiest on a shared small machine)
}
DATA_KEYS = tuple(DEFAULTS["data"])
SECTIONS = {
    "adapter": None,  # the method's own fields: checked by check_adapter and the method config
    "backbone": BackboneConfig,
    "data": DataConfig,
    "head": HeadConfig,
    "optim": OptimConfig,
    "trainer": TrainerOptions,
    "eval": EvalConfig,
    "runtime": RuntimeConfig,
}


ADAPTER_KEYS = ("method", "towers", "modules")  # the pipeline's own; the rest: the method's


def check_adapter(section: dict) -> None:
    """The ``adapter:`` keys this pipeline reads itself, and the method's own fields (``r``,
    ``alpha``, ...: names and kinds from the method table, without torch)."""
    if not isinstance(section, dict):
        raise ValueError(f"adapter must be a mapping, got {section!r}")
    method = section.get("method", "lora")
    check_method(method, also=tuple(REPLACEMENT_METHODS))
    own = {k: v for k, v in section.items() if k not in ADAPTER_KEYS}
    if is_replacement(method):
        check_replacement_fields(method, replacement_hyper(method, own, DEFAULTS["adapter"]))
    else:
        check_fields(method, own)
    if section.get("towers", "both") not in TOWERS:
        raise ValueError(f"adapter.towers must be both, vision or text; got {section['towers']!r}")
    modules = section.get("modules", ["q", "k", "v"])
    modules = [modules] if isinstance(modules, str) else modules
    if not isinstance(modules, list | tuple) or not set(modules) <= {*MODULES, "qkv"}:
        raise ValueError(f"adapter.modules: {modules!r} not allowed; choose from {MODULES} (or 'qkv')")
    if is_replacement(method) and list(modules) != ["mlp"]:
        raise ValueError(
            f"adapter.modules: {method} replaces nn.Linear layers, and CLIP's q, k, v, o are "
            f"weights of nn.MultiheadAttention (not Linears it calls); set adapter.modules=[mlp], "
            f"got {modules!r}"
        )


def check(cfg: dict) -> dict:
    """Every section checked without torch; returns the typed sections by name."""
    built = check_sections(cfg, SECTIONS, DEFAULTS)
    check_adapter(cfg.get("adapter") or {})
    if built["optim"].batch_size < 1:
        raise ValueError(f"optim.batch_size must be positive, got {built['optim'].batch_size}")
    for name in ("heldout",):
        if isinstance(cfg["data"].get(name), dict):
            typed_section(DataConfig, cfg["data"][name], f"data.{name}")
    return built


def eval_config(cfg: dict, overrides: dict) -> tuple[dict, str]:
    """``lorakit eval clip --set``: dotted config keys (``data.root=...``) set into the
    stored config. Returns ``(config, suite)``."""
    from lorakit.data.runs import set_dotted

    for key, value in overrides.items():
        set_dotted(cfg, key, value)
    return cfg, "all"
