"""``lorakit train asr`` / ``lorakit eval asr``: adapt Whisper to child speech.

    lorakit train asr --config demos/asr.yaml --out runs/asr
    lorakit eval asr --run runs/asr --set beam_size=5

A run folder gets config.yaml, adapter/, metrics.json (``wer``, ``cer``, per group, and the
unadapted model's ``baseline_*``), utterances.csv, plots/ (training curve, S2-LoRA
heatmap), logs/ and checkpoints/; optionally export/ (merged .pt, CTranslate2 folder).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from torch.utils.data import DataLoader
from whisper.model import Whisper

from lorakit.core import disable, enable, inject, load_adapter, make_config, save_adapter
from lorakit.data.audio import AugmentConfig
from lorakit.data.manifest import Utterance, read_manifest
from lorakit.data.plots import plot_training_curve
from lorakit.data.runs import (
    RunFolder,
    TrainerOptions,
    build_trainer,
    dataclass_from,
    trainer_options,
)
from lorakit.data.speech import SplitSpec, generate_corpus

from .build import DEFAULT_MODEL, load_whisper
from .evaluate import (
    decode_features,
    lambda_heatmap,
    score,
    summarize,
    transcribe_utterances,
    write_utterance_csv,
)
from .export import export_run
from .features import SpeechDataset, make_collate
from .train import TrainConfig, WhisperAdapterModule, encoder_is_adapted
from .transcribe import DecodeConfig

log = logging.getLogger(__name__)


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


DEFAULTS: dict = {
    "model": {"name": DEFAULT_MODEL, "language": "en"},
    "data": {
        "train": None,
        "test": None,
        "max_duration": 30.0,
        "generate": {
            "dir": "cache/asr-speech",
            "train_sentences": 24,
            "test_sentences": 8,
            "train_groups": ["child"],
            "test_groups": ["adult", "child"],
            "seed": 0,
        },
    },
    "adapter": {"method": "s2_lora", "r": 8, "alpha": 16.0, "targets": ["whisper-attn"]},
    "train": dataclasses.asdict(TrainConfig()),
    "augment": _plain(dataclasses.asdict(AugmentConfig())),
    "eval": {**dataclasses.asdict(DecodeConfig()), "baseline": True, "export": []},
    "trainer": dataclasses.asdict(TrainerOptions(max_steps=60, checkpoint_every=20)),
}
GENERATE_KEYS = set(DEFAULTS["data"]["generate"])


def _section(cfg: dict, name: str) -> dict:
    value = cfg.get(name) or {}
    if not isinstance(value, dict):
        raise ValueError(f"config section {name!r} must be a mapping")
    return dict(value)


def resolve_data(cfg: dict) -> tuple[Path, Path]:
    """The train and test manifests: given paths, or a generated espeak-ng corpus."""
    data = _section(cfg, "data")
    unknown = sorted(set(data) - set(DEFAULTS["data"]))
    if unknown:
        raise ValueError(f"data: unknown key(s) {unknown}; valid: {sorted(DEFAULTS['data'])}")
    train, test = data.get("train"), data.get("test")
    if train and test:
        return Path(train), Path(test)
    gen = {**DEFAULTS["data"]["generate"], **(data.get("generate") or {})}
    bad = sorted(set(gen) - GENERATE_KEYS)
    if bad:
        raise ValueError(f"data.generate: unknown key(s) {bad}; valid: {sorted(GENERATE_KEYS)}")
    splits = {
        "train": SplitSpec(int(gen["train_sentences"]), tuple(gen["train_groups"])),
        "test": SplitSpec(int(gen["test_sentences"]), tuple(gen["test_groups"])),
    }
    log.info("generating espeak-ng speech into %s (cached)", gen["dir"])
    made = generate_corpus(gen["dir"], splits, seed=int(gen["seed"]))
    return Path(train or made["train"]), Path(test or made["test"])


def adapter_config(cfg: dict):
    section = _section(cfg, "adapter")
    method = section.pop("method", "s2_lora")
    if method not in ("s2_lora", "lora"):
        log.warning(
            "adapter.method %r is not one of the speech pipeline's tested methods (s2_lora, lora)",
            method,
        )
    return make_config(method, **section)


def decode_config(cfg: dict) -> tuple[DecodeConfig, dict]:
    section = _section(cfg, "eval")
    extra = {k: section.pop(k) for k in ("baseline", "export") if k in section}
    section.setdefault("language", _section(cfg, "model").get("language", "en"))
    section.setdefault("max_duration", _section(cfg, "data").get("max_duration", 30.0))
    return dataclass_from(DecodeConfig, section, "eval"), extra


def evaluate_model(model: Whisper, utts: list[Utterance], cfg: dict, run: RunFolder) -> dict:
    """Decode ``utts`` with the adapter (and without it when ``eval.baseline``); write
    utterances.csv (+ baseline_utterances.csv), the S2-LoRA heatmap; return the metrics."""
    dcfg, extra = decode_config(cfg)
    start = time.time()
    reuse = (
        [] if not encoder_is_adapted(model) else None
    )  # encoder outputs are the same with/without adapter
    hyps = transcribe_utterances(model, utts, dcfg, features=reuse)
    rows = score(utts, hyps, dcfg.language)
    metrics = summarize(rows)
    write_utterance_csv(rows, run.path / "utterances.csv")
    if extra.get("baseline", True):
        disable(model)
        try:
            base = (
                decode_features(model, reuse, dcfg)
                if reuse
                else transcribe_utterances(model, utts, dcfg)
            )
        finally:
            enable(model)
        base_rows = score(utts, base, dcfg.language)
        metrics.update(summarize(base_rows, prefix="baseline_"))
        write_utterance_csv(base_rows, run.path / "baseline_utterances.csv")
    metrics["n_test_utterances"] = len(utts)
    metrics["eval_seconds"] = round(time.time() - start, 1)
    metrics["decoding"] = "greedy" if dcfg.beam_size is None else f"beam{dcfg.beam_size}"
    lambda_heatmap(model, run.plots / "s2_lora_lambda.png")
    return metrics


def train(cfg: dict, out: Path, callbacks: list | None = None) -> dict:
    """Inject the adapter, train with Lightning, save, evaluate; returns the metrics."""
    run = RunFolder(out)
    run.write_config(cfg)
    opts = trainer_options(cfg.get("trainer"))
    tcfg = dataclass_from(TrainConfig, _section(cfg, "train"), "train")
    aug = dataclass_from(AugmentConfig, _section(cfg, "augment"), "augment")
    acfg = adapter_config(cfg)
    decode_config(cfg)  # validate the eval section before spending time on training
    train_manifest, test_manifest = resolve_data(cfg)
    train_utts, test_utts = read_manifest(train_manifest), read_manifest(test_manifest)
    model_section = _section(cfg, "model")
    model = load_whisper(model_section.get("name"))
    report = inject(model, acfg)
    log.info("%s", report)
    max_duration = float(_section(cfg, "data").get("max_duration", 30.0))
    dataset = SpeechDataset(
        train_utts, model, model_section.get("language", "en"), aug, max_duration, opts.seed
    )
    loader = DataLoader(
        dataset,
        batch_size=tcfg.batch_size,
        shuffle=True,
        num_workers=tcfg.num_workers,
        collate_fn=make_collate(dataset.prompt_len, dataset.tokenizer.eot),
        drop_last=False,
    )
    module = WhisperAdapterModule(model, tcfg, cache_ok=dataset.deterministic)
    trainer, ckpt = build_trainer(opts, run, callbacks)
    start = time.time()
    trainer.fit(module, loader, ckpt_path=ckpt)
    train_seconds = time.time() - start
    if not trainer.is_global_zero:
        return {}
    save_adapter(model, run.adapter)
    plot_training_curve(
        run.logs / "metrics.csv", run.plots / "training_curve.png", keys=("train_loss", "train_ce")
    )
    metrics = evaluate_model(model, test_utts, cfg, run)
    steps = max(trainer.global_step, 1)
    metrics.update(
        {
            "method": acfg.method,
            "trainable_parameters": report.trainable,
            "total_parameters": report.total,
            "adapted_layers": len(report.layers),
            "train_steps": trainer.global_step,
            "train_seconds": round(train_seconds, 1),
            "seconds_per_step": round(train_seconds / steps, 3),
            "model": model_section.get("name"),
        }
    )
    _, extra = decode_config(cfg)
    if extra.get("export"):
        written = export_run(model, run.path / "export", tuple(extra["export"]))
        metrics["exported"] = {k: str(v) for k, v in written.items()}
    run.write_metrics(metrics)
    return metrics


def evaluate(run_dir: Path, overrides: dict) -> dict:
    """Recompute a run's metrics from its saved adapter. ``overrides``: eval keys
    (``beam_size=5``) or dotted config keys (``data.test=other.jsonl``)."""
    run = RunFolder(run_dir)
    cfg = run.read_config()
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        section = section or "eval"
        if section not in DEFAULTS:
            raise ValueError(f"--set {key}: unknown config section {section!r}")
        cfg.setdefault(section, {})[name] = value
    if not (run.adapter / "adapter_config.json").is_file():
        raise ValueError(f"{run.path} has no adapter/ folder: train the run first")
    _, test_manifest = resolve_data(cfg)
    model = load_whisper(_section(cfg, "model").get("name"))
    load_adapter(model, run.adapter)
    metrics = {
        **run.read_metrics(),
        **evaluate_model(model, read_manifest(test_manifest), cfg, run),
    }
    run.write_metrics(metrics)
    return metrics
