"""The asr pipeline's config: its sections as dataclasses, ``DEFAULTS`` and ``check``.

Imports no torch, so ``lorakit train asr`` checks a config (unknown sections and keys,
values of the wrong type, bad choices) within a second, before the pipeline module loads.
The pipeline (``pipeline.py``) runs the same ``check`` first, then what needs torch (the
adapter method's own fields, the quantization spec).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lorakit.data.audio_config import AugmentConfig
from lorakit.data.method_fields import check_fields, check_method, fields_of
from lorakit.data.runtime.options import TrainerOptions
from lorakit.data.sections import check_sections, typed_section
from lorakit.data.vocabulary import Rename

if TYPE_CHECKING:
    import whisper
    from whisper.model import Whisper

    from .fallback import FallbackRule

@dataclass
class TrainConfig:
    """The ``train:`` section."""

    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 10
    cache_encoder: bool = True  # reuse frozen-encoder outputs (only when valid)
    num_workers: int = 0
    val_every: int = 20  # validation WER every N steps (early stopping; needs a val split)
    patience: int = 3  # stop after this many validations without a better WER

    def __post_init__(self):
        if self.batch_size < 1 or self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError("train: batch_size >= 1, lr > 0 and warmup_steps >= 0 are required")
        if self.val_every < 1 or self.patience < 1:
            raise ValueError("train: val_every >= 1 and patience >= 1 are required")


@dataclass(frozen=True)
class DecodeConfig:
    """The ``eval:`` decoding options. ``beam_size`` None = greedy."""

    beam_size: int | None = None
    batch_size: int = 8
    sample_len: int | None = 96  # max tokens per utterance (Whisper's default: 224)
    language: str = "en"
    max_duration: float = 30.0
    # temperature fallback (fallback.py): re-decode when the text loops or is unsure
    fallback: bool = True
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    temperature_step: float = 0.2
    best_of: int = 5  # samples per fallback temperature, the most likely kept
    seed: int = 0  # of the fallback's sampling

    def rule(self) -> FallbackRule | None:
        """The fallback rule, or None when ``fallback`` is off."""
        from .fallback import FallbackRule

        if not self.fallback:
            return None
        if self.best_of < 1:
            raise ValueError(f"eval.best_of must be >= 1, got {self.best_of}")
        return FallbackRule(
            self.compression_ratio_threshold, self.logprob_threshold, self.temperature_step
        )

    def options(self, model: Whisper, temperature: float = 0.0) -> whisper.DecodingOptions:
        """Greedy / beam search at ``temperature`` 0, else sampling (one draw per row)."""
        import whisper
        if self.beam_size is not None and self.beam_size < 1:
            raise ValueError(f"eval.beam_size must be >= 1 or null (greedy), got {self.beam_size}")
        sample_len = min(self.sample_len or model.dims.n_text_ctx // 2, model.dims.n_text_ctx // 2)
        return whisper.DecodingOptions(
            language=self.language if model.is_multilingual else "en",
            without_timestamps=True,
            fp16=False,
            temperature=temperature,
            beam_size=self.beam_size if temperature == 0 else None,
            sample_len=sample_len,
        )


DEFAULT_MODEL = "tiny.en-ct2"


# backbone.quantize: lorakit.core.quant.options.QUANT_DEFAULTS (that module imports torch;
# a test keeps the two equal)
QUANT_DEFAULTS = {"bits": None, "scheme": "nf", "group_size": 64, "targets": []}
QUANT_KEYS = (*QUANT_DEFAULTS, "backend")  # backend (auto): recorded only when set


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# The recipe chosen on the validation split (demos/recipe_asr.py; README "child speech"):
# S2-LoRA on the encoder's attention and MLP (child speech is an acoustic shift), the
# proximal step on (xi 0.5 of the coefficients' lr, which is 10x the pair's), augmentation
# on, early stopping on validation WER.
ENCODER_ATTN = r"encoder\.blocks\.\d+\.attn\.(query|key|value|out)"
ENCODER_MLP = r"encoder\.blocks\.\d+\.mlp\.(0|2)"
DECODER_ATTN = r"decoder\.blocks\.\d+\.(attn|cross_attn)\.(query|key|value|out)"
RECIPE_ADAPTER = {
    "method": "s2_lora",
    "r": 8,
    "alpha": 16.0,
    "beta": 1e-4,
    "prox_threshold": 0.5,
    "lam_lr_scale": 10.0,
    "targets": [ENCODER_ATTN, ENCODER_MLP],
}
RECIPE_TRAIN = {"batch_size": 4, "lr": 2e-3, "warmup_steps": 5, "val_every": 20, "patience": 3}
RECIPE_AUGMENT = {"pitch_p": 0.5, "formant_p": 0.5, "tempo_p": 0.3, "specaug_p": 0.5}
RECIPE_TRAINER = {"max_steps": 200, "checkpoint_every": 20}
# headline metrics for the hub: held-out child / adult WER (another TTS engine)
HEADLINE = ("wer_heldout_child", "wer_heldout_adult")
EVAL_EXTRAS = ("baseline", "export", "sets")  # eval keys beside the decoding options


DEFAULTS: dict = {
    "backbone": {"name": DEFAULT_MODEL, "language": "en", "quantize": dict(QUANT_DEFAULTS)},
    "data": {
        "train": None,
        "val": None,
        "test": None,
        "heldout": None,
        "max_duration": 30.0,
        "generate": {
            "dir": "cache/asr-speech",
            "train_sentences": 290,
            "val_sentences": 32,
            "test_sentences": 48,
            "train_groups": ["adult", "child"],
            "train_versions": 1,
            "test_groups": ["adult", "child"],
            "heldout_dir": None,  # None: <dir>/heldout
            "seed": 0,
        },
    },
    "adapter": {**RECIPE_ADAPTER},
    "optim": {**dataclasses.asdict(TrainConfig()), **RECIPE_TRAIN},
    "augment": {**_plain(dataclasses.asdict(AugmentConfig())), **RECIPE_AUGMENT},
    "eval": {
        **dataclasses.asdict(DecodeConfig()),
        "baseline": True,
        "export": [],
        "sets": ["test", "heldout"],
    },
    "trainer": dataclasses.asdict(TrainerOptions(**RECIPE_TRAINER)),
}
GENERATE_KEYS = set(DEFAULTS["data"]["generate"])
SECTIONS = {
    "adapter": None,  # the method's own fields: checked when its config is made
    "optim": TrainConfig,
    "augment": AugmentConfig,
    "trainer": TrainerOptions,
}
# the old section names, read for one release (see lorakit.data.vocabulary)
RENAMED = (Rename("model", "backbone"), Rename("train", "optim"))


def section(cfg: dict, name: str) -> dict:
    """A copy of section ``name`` (``{}`` when absent); not a mapping: one line."""
    value = cfg.get(name) or {}
    if not isinstance(value, dict):
        raise ValueError(f"config section {name!r} must be a mapping")
    return dict(value)


def check_data(cfg: dict) -> tuple[dict, dict]:
    """The ``data:`` section and its ``generate:`` part, unknown keys named."""
    data = section(cfg, "data")
    unknown = sorted(set(data) - set(DEFAULTS["data"]))
    if unknown:
        raise ValueError(f"data: unknown key(s) {unknown}; valid: {sorted(DEFAULTS['data'])}")
    gen = {**DEFAULTS["data"]["generate"], **(data.get("generate") or {})}
    bad = sorted(set(gen) - GENERATE_KEYS)
    if bad:
        raise ValueError(f"data.generate: unknown key(s) {bad}; valid: {sorted(GENERATE_KEYS)}")
    return data, gen


def decode_config(cfg: dict) -> tuple[DecodeConfig, dict]:
    """The ``eval:`` section: the decoding options and the extras (baseline, export, sets)."""
    sec = section(cfg, "eval")
    extra = {k: sec.pop(k) for k in EVAL_EXTRAS if k in sec}
    bad = sorted(set(extra.get("sets", [])) - {"test", "heldout"})
    if bad or extra.get("sets") == []:
        raise ValueError(f"eval.sets: choose from test, heldout (got {extra.get('sets')})")
    sec.setdefault("language", section(cfg, "backbone").get("language", "en"))
    sec.setdefault("max_duration", section(cfg, "data").get("max_duration", 30.0))
    return typed_section(DecodeConfig, sec, "eval"), extra


def recipe_leftovers(method: str, adapter: dict) -> list[str]:
    """The S2-LoRA recipe's fields (``beta``, ...) still at their recipe value in a config
    whose method does not have them: left out, not refused (the pipeline drops them)."""
    known = fields_of(method) or {}
    return sorted(k for k, v in adapter.items()
                  if k in RECIPE_ADAPTER and k not in known and v == RECIPE_ADAPTER[k])  # fmt: skip


def check_adapter(adapter: dict) -> None:
    """The method name and its own fields (names and kinds from the method table)."""
    method = adapter.get("method", "s2_lora")
    check_method(method)
    dropped = {"method", *recipe_leftovers(method, adapter)}
    check_fields(method, {k: v for k, v in adapter.items() if k not in dropped})


def check(cfg: dict) -> dict:
    """Every section checked without torch; returns the typed sections by name."""
    built = check_sections(cfg, SECTIONS, DEFAULTS)
    check_data(cfg)
    backbone = section(cfg, "backbone")
    quant = backbone.get("quantize")
    if quant is not None and not isinstance(quant, dict):
        raise ValueError("backbone.quantize must be a mapping (bits, scheme, group_size, targets)")
    bad = sorted(set(quant or {}) - set(QUANT_KEYS))
    if bad:
        raise ValueError(f"backbone.quantize: unknown key(s) {bad}; valid: {list(QUANT_KEYS)}")
    check_adapter(section(cfg, "adapter"))
    built["eval"], extra = decode_config(cfg)
    if "quantized" in extra.get("export", []) and (quant or {}).get("bits") is None:
        raise ValueError("eval.export: 'quantized' needs a quantized base (backbone.quantize.bits)")
    return built


def eval_config(cfg: dict, overrides: dict) -> tuple[dict, str]:
    """``lorakit eval asr --set``: eval keys (``beam_size=5``) or dotted config keys
    (``data.test=other.jsonl``). Returns ``(config, suite)``."""
    for key, value in overrides.items():
        name, _, field = key.rpartition(".")
        name = {r.old: r.new for r in RENAMED}.get(name, name or "eval")
        if name not in DEFAULTS:
            raise ValueError(f"--set {key}: unknown config section {name!r}")
        cfg.setdefault(name, {})[field] = value
    return cfg, "all"
