"""The cod pipeline's config: its sections as dataclasses, ``DEFAULTS`` and ``check``.

Imports no torch, so ``lorakit train cod`` checks a config (unknown sections and keys,
values of the wrong type, bad choices) within a second, before the pipeline module loads.
The pipeline (``pipeline.py``) runs the same ``check`` first, then what needs torch (the
adapter method against the registry).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lorakit.data.runtime.options import TrainerOptions
from lorakit.data.sections import RuntimeConfig, backbone_defaults, check_sections

# the prompt-free students of the distillation stage (built in distill.py)
DISTILL_ARCHS = ("lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_small", "fcn_resnet18")


@dataclass
class BackboneConfig:
    """The ``backbone:`` section. ``name``: tiny | vit_b | vit_l | vit_h.

    tiny: ``img_size`` (multiple of 16), ``embed_dim``, ``depth``, ``heads``, ``window``
    (local attention window; the last block is global), ``dim`` (prompt/decoder width),
    ``seed`` (the random weights are rebuilt identically from it), ``pretrain_steps``
    (> 0: first train it on obvious generated objects, see ``pretrain.py``; the checkpoint
    is cached under ``cache``). vit_*: ``checkpoint``.
    """

    name: str = "tiny"
    checkpoint: str | None = None
    img_size: int = 128
    embed_dim: int = 64
    depth: int = 2
    heads: int = 2
    window: int = 4
    dim: int = 64
    seed: int = 0
    pretrain_steps: int = 0
    pretrain_cue: str = "colour"  # the scenes of the stand-in pretraining (see data.camouflage)
    cache: str | None = None
    # a quantized base: {bits, scheme, group_size, targets} as in every pipeline ({}: float)
    quantize: dict | None = field(default_factory=dict)


@dataclass
class AdapterSpec:
    """The ``adapter:`` section. method: fora (default), lora, any other lorakit method
    (``hyper``: its extra config fields), or none (SAM zero-shot)."""

    method: str = "fora"
    r: int = 4
    alpha: float = 4.0
    dropout: float = 0.0
    n_bands: int = 8
    decoder: bool = True  # also adapt the decoder's image-side attention projections
    fusion: bool = True  # the multi-scale frequency-aware fusion in the mask head
    fusion_scales: list[int] = field(default_factory=lambda: [1, 2, 4])
    hyper: dict = field(default_factory=dict)

    def validate_light(self) -> None:
        """The method name is checked against the registry (which imports torch) in
        ``validate``, by the pipeline."""
        from lorakit.data.method_fields import check_fields, check_method  # no torch

        if not self.method or not isinstance(self.method, str):
            raise ValueError(f"adapter.method must be a method name or none, got {self.method!r}")
        check_method(self.method, also=("none",))
        check_fields(self.method, self.hyper, "adapter.hyper")

    def validate(self) -> None:
        from lorakit.core import list_methods  # the method registry imports torch

        if self.method != "none" and self.method not in list_methods():
            raise ValueError(
                f"adapter.method must be none or a lorakit method ({', '.join(list_methods())}), "
                f"got {self.method!r}"
            )


PROMPT_MODES = ("points", "box", "points+box")


LABEL_SOURCES = ("scribble", "points", "box")


@dataclass
class PromptOptions:
    """The ``prompts:`` section. mode: points | box | points+box; labels: the weak labels
    that supervise training and give the points (scribble | points | box; box labels
    give no points, so they need ``mode: box``)."""

    mode: str = "points"
    labels: str = "scribble"
    n_fg: int = 3
    n_bg: int = 3

    def validate(self) -> None:
        if self.mode not in PROMPT_MODES:
            raise ValueError(
                f"prompts.mode must be one of {', '.join(PROMPT_MODES)}, got {self.mode!r}"
            )
        if self.labels not in LABEL_SOURCES:
            raise ValueError(
                f"prompts.labels must be one of {', '.join(LABEL_SOURCES)}, got {self.labels!r}"
            )
        if self.labels == "box" and self.mode != "box":
            raise ValueError(
                f"prompts.labels box gives no points: set prompts.mode to box (got {self.mode!r})"
            )
        if self.n_fg < 1 or self.n_bg < 0:
            raise ValueError(f"prompts: need n_fg >= 1 and n_bg >= 0, got {self.n_fg}, {self.n_bg}")

    @property
    def weak(self) -> tuple[str, ...]:
        """The weak-label files a COD folder must provide for these options."""
        kinds = [self.labels]
        if "box" in self.mode:
            kinds.append("box")
        return tuple(dict.fromkeys(kinds))


@dataclass
class LossConfig:
    """The ``loss:`` section; a weight of 0 (or ``pbce: false``) switches a loss off."""

    pbce: bool = True
    balanced: bool = True  # partial BCE: foreground and background pixels weigh the same
    contrastive: float = 0.1
    consistency: float = 1.0
    tau: float = 0.1
    grad_beta: float = 4.0
    ema_decay: float = 0.99
    box_projection: float = 1.0  # weight; used only under box supervision (prompts.labels box)

    def validate(self) -> None:
        if not (self.pbce or self.contrastive > 0 or self.consistency > 0):
            raise ValueError(
                "loss: every loss is switched off (pbce false, contrastive 0, consistency 0)"
            )
        if self.box_projection < 0:
            raise ValueError(f"loss.box_projection must be >= 0, got {self.box_projection}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"loss.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class OptimConfig:
    """The ``optim:`` section."""

    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 4


@dataclass
class SelfTrainConfig:
    """The ``selftrain:`` section. ``rounds`` 0 switches self-training off; ``steps`` per
    round (null: ``trainer.max_steps``); ``fg``/``bg`` the teacher-probability thresholds."""

    rounds: int = 0
    steps: int | None = None
    # a weakly trained teacher is rarely sure: at 0.7 / 0.3 the foreground labels covered
    # 15 % of the objects on generated training scenes, at 0.5 / 0.2 35 %, as accurate
    fg: float = 0.5
    bg: float = 0.2

    def validate(self) -> None:
        if self.rounds < 0:
            raise ValueError(f"selftrain.rounds must be >= 0, got {self.rounds}")
        if not 0.0 <= self.bg < self.fg <= 1.0:
            raise ValueError(f"selftrain: need 0 <= bg < fg <= 1, got bg={self.bg}, fg={self.fg}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"selftrain.steps must be >= 1 (or null), got {self.steps}")


@dataclass
class DistillConfig:
    """The ``distill:`` section (``enabled: false`` skips the stage)."""

    enabled: bool = False
    arch: str = "lraspp_mobilenet_v3_large"
    size: int = 128  # the student's square input
    steps: int = 200
    lr: float = 1e-2  # random init learns slowly at 2e-3 (measured: S 0.46 vs 0.56 after 60 steps)
    batch_size: int = 8
    seed: int = 0
    checkpoint: str | None = None  # optional local state dict for the student's backbone

    def validate(self) -> None:
        if self.arch not in DISTILL_ARCHS:
            raise ValueError(f"distill.arch must be one of {', '.join(DISTILL_ARCHS)}, got {self.arch!r}")
        if self.size < 32 or self.size % 16:
            raise ValueError(f"distill.size must be a multiple of 16 and >= 32, got {self.size}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"distill: steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}"
            )


@dataclass
class DataConfig:
    """The ``data:`` section: COD folders, or the generated camouflage scenes' settings."""

    train: str | None = None  # COD folder; null = generate
    test: dict | None = field(default_factory=dict)  # name -> COD folder; empty: "synthetic"
    cache: str = "runs/_cache/cod"  # where generated scenes go (reused when settings match)
    n_train: int = 64
    n_test: int = 32
    size: int = 128
    difficulty: float = 0.5
    cue: str = "texture"  # texture: colour-matched, texture differs; colour: earlier scenes
    seed: int = 0

    def validate(self) -> None:
        from lorakit.data.camouflage import CUES  # numpy and OpenCV, no torch

        if self.cue not in CUES:
            raise ValueError(f"data.cue must be one of {', '.join(CUES)}, got {self.cue!r}")


@dataclass
class EvalConfig:
    zero_shot: bool = True
    seed: int = 0
    grid: int = 6
    progress: bool = True


DATA_DEFAULTS = asdict(DataConfig())
EVAL_DEFAULTS = asdict(EvalConfig())
DEFAULTS = {
    "data": DATA_DEFAULTS,
    "backbone": {**backbone_defaults(asdict(BackboneConfig())), "pretrain_steps": 150},
    "adapter": asdict(AdapterSpec()),
    "prompts": asdict(PromptOptions()),
    "loss": asdict(LossConfig()),
    "optim": {**asdict(OptimConfig()), "lr": 3e-3},
    "eval": EVAL_DEFAULTS,
    "selftrain": asdict(SelfTrainConfig()),
    "distill": asdict(DistillConfig()),
    "trainer": {**asdict(TrainerOptions()), "max_steps": 100},
    "runtime": {"threads": None},  # torch CPU threads (null: torch's default)
}
SECTIONS = {
    "data": DataConfig,
    "backbone": BackboneConfig,
    "adapter": AdapterSpec,
    "prompts": PromptOptions,
    "loss": LossConfig,
    "optim": OptimConfig,
    "eval": EvalConfig,
    "selftrain": SelfTrainConfig,
    "distill": DistillConfig,
    "trainer": TrainerOptions,
    "runtime": RuntimeConfig,
}


def check(cfg: dict) -> dict:
    """Every section checked without torch; returns the typed sections by name."""
    built = check_sections(cfg, SECTIONS, DEFAULTS)
    opts, st = built["trainer"], built["selftrain"]
    if st.rounds and (str(opts.devices) != "1" or opts.nodes != 1):
        raise ValueError(
            "selftrain.rounds run in one process (the pseudo-labels are made between fits): "
            f"set trainer.devices=1 and trainer.nodes=1, got {opts.devices} x {opts.nodes}"
        )
    if int(built["optim"].batch_size) < 1:
        raise ValueError(f"optim.batch_size must be positive, got {built['optim'].batch_size}")
    return built


def eval_config(cfg: dict, overrides: dict) -> tuple[dict, str]:
    """``lorakit eval cod --set``: ``key=value`` is an ``eval:`` key, a dotted key any
    config key. Returns ``(config, suite)``."""
    from lorakit.data.runs import set_dotted

    cfg.setdefault("data", {}).setdefault("cue", "colour")  # runs before data.cue: colour
    for key, value in overrides.items():
        set_dotted(cfg, key if "." in key else f"eval.{key}", value)
    return cfg, "all"
