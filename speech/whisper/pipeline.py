"""``lorakit train asr`` / ``lorakit eval asr``: adapt Whisper to child speech.

    lorakit train asr --config demos/asr.yaml --out runs/asr
    lorakit eval asr --run runs/asr --set beam_size=5

A run folder gets config.yaml, adapter/, metrics.json (``wer``, ``cer``, per group, and the
unadapted model's ``baseline_*``), utterances.csv, plots/ (training curve, S2-LoRA
heatmap), logs/ and checkpoints/; optionally export/ (merged .pt, CTranslate2 folder).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from whisper.model import Whisper

from lorakit.core import disable, enable, load_adapter, make_config, save_adapter
from lorakit.data.heldout import generate_heldout
from lorakit.data.manifest import Utterance, read_manifest
from lorakit.data.runs import RunFolder
from lorakit.data.runtime import (
    SeededItems,
    StepSampler,
    check_method_supported,
)
from lorakit.data.runtime.pipeline import Fit, Pipeline, run_eval, run_training
from lorakit.data.runtime.quantized import Calibration
from lorakit.data.speech import SplitSpec, generate_corpus

from . import config
from .build import load_whisper
from .config import (  # noqa: F401  (DEFAULTS, RECIPE_*, ...: the old import path)
    DECODER_ATTN,
    DEFAULT_MODEL,
    DEFAULTS,
    ENCODER_ATTN,
    ENCODER_MLP,
    GENERATE_KEYS,
    RECIPE_ADAPTER,
    RECIPE_AUGMENT,
    RECIPE_TRAIN,
    RECIPE_TRAINER,
    RENAMED,
    check,
    decode_config,
)
from .config import check_data as _check_data
from .evaluate import (
    Scored,
    decode_features,
    kept_ranks,
    lambda_heatmap,
    score,
    summarize,
    transcribe_utterances,
    write_utterance_csv,
)
from .export import export_run
from .features import SpeechDataset, make_collate
from .train import WhisperAdapterModule, encoder_is_adapted, sequence_loss
from .validate import ValidationWER, group_intervals

log = logging.getLogger(__name__)


def _section(cfg: dict, name: str) -> dict:
    value = cfg.get(name) or {}
    if not isinstance(value, dict):
        raise ValueError(f"config section {name!r} must be a mapping")
    return dict(value)


def resolve_data(cfg: dict) -> dict[str, Path | None]:
    """``{train, val, test, heldout}`` manifests: given paths, else the generated espeak-ng
    corpus (train/val/test, disjoint sentences) and the flite held-out set. ``val`` and
    ``heldout`` are None when ``test`` is given without them."""
    data, gen = _check_data(cfg)
    given = {k: Path(data[k]) if data.get(k) else None for k in ("train", "val", "test", "heldout")}
    if given["train"] and given["test"]:
        return given
    splits = {
        "train": SplitSpec(
            int(gen["train_sentences"]), tuple(gen["train_groups"]), int(gen["train_versions"])
        ),
        "val": SplitSpec(int(gen["val_sentences"]), tuple(gen["test_groups"])),
        "test": SplitSpec(int(gen["test_sentences"]), tuple(gen["test_groups"])),
    }
    log.info("generating espeak-ng speech into %s (cached)", gen["dir"])
    made = generate_corpus(gen["dir"], splits, seed=int(gen["seed"]))
    heldout = given["heldout"] or generate_heldout(
        gen["heldout_dir"] or Path(gen["dir"]) / "heldout"
    )
    return {k: given[k] or made[k] for k in ("train", "val", "test")} | {"heldout": heldout}


def adapter_config(cfg: dict):
    section = _section(cfg, "adapter")
    method = section.pop("method", "s2_lora")
    check_method_supported(method)  # before its fields are checked against the method
    if method not in ("s2_lora", "lora"):
        log.warning(
            "adapter.method %r is not one of the speech pipeline's tested methods (s2_lora, lora)",
            method,
        )
    # the recipe's S2-LoRA-only fields (beta, prox_threshold, ...) do not apply to other methods
    s2_only = set(S2_FIELDS) - set(config_fields(method))
    dropped = sorted(k for k in s2_only if k in section and section[k] == RECIPE_ADAPTER.get(k))
    if method != "s2_lora" and dropped:
        log.info("adapter: %s (S2-LoRA recipe fields) not used by %s", ", ".join(dropped), method)
        section = {k: v for k, v in section.items() if k not in dropped}
    return make_config(method, **section)


S2_FIELDS = ("beta", "prox_threshold", "prox_lr", "lam_lr_scale", "group_patterns")


def config_fields(method: str) -> list[str]:
    from dataclasses import fields

    from lorakit.core.methods import METHODS

    return [f.name for f in fields(METHODS[method][0])] if method in METHODS else []


def evaluate_utterances(
    data: dict[str, Path | None], sets: tuple[str, ...] = ("test", "heldout")
) -> list[Utterance]:
    """The test rows, then the held-out rows with their groups named ``heldout_<group>``."""
    utts = read_manifest(data["test"]) if "test" in sets else []
    if data.get("heldout") and "heldout" in sets:
        for u in read_manifest(data["heldout"]):
            group = u.group if u.group.startswith("heldout") else f"heldout_{u.group or 'all'}"
            utts.append(dataclasses.replace(u, group=group))
    return utts


def summaries(rows: list[Scored], prefix: str = "") -> dict:
    """Test-split ``wer``/``cer`` (+ per group), held-out ``wer_heldout`` and
    ``wer_heldout_<group>``, and a 95 % bootstrap interval (over sentences) per group."""
    test = [r for r in rows if not r.utt.group.startswith("heldout")]
    held = [r for r in rows if r.utt.group.startswith("heldout")]
    out = {**summarize(test, prefix), **group_intervals(test, prefix)} if test else {}
    if held:
        h = summarize(held, prefix)
        out.update({k: v for k, v in h.items() if "heldout" in k})
        out[f"{prefix}wer_heldout"], out[f"{prefix}cer_heldout"] = (
            h[f"{prefix}wer"],
            h[f"{prefix}cer"],
        )
        out.update(group_intervals(held, prefix))
    return out


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
    metrics = summaries(rows)
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
        metrics.update(summaries(base_rows, prefix="baseline_"))
        write_utterance_csv(base_rows, run.path / "baseline_utterances.csv")
    metrics["n_test_utterances"] = len(utts)
    metrics["eval_seconds"] = round(time.time() - start, 1)
    metrics["decoding"] = "greedy" if dcfg.beam_size is None else f"beam{dcfg.beam_size}"
    if lambda_heatmap(model, run.plots / "s2_lora_lambda.png") is not None:
        metrics["s2_lora_ranks"] = kept_ranks(model)
    return metrics


class ASRPipeline(Pipeline):
    """Whisper on child speech: the hooks of the shared run (``lorakit.data.runtime.pipeline``,
    which also owns the quantized base, ``backbone.quantize``); exports (``eval.export``)
    are its own."""

    name, config, renamed = "asr", config, RENAMED
    curve_keys = ("train_loss", "train_ce")

    def check(self, cfg: dict) -> dict:
        sections = super().check(cfg)
        sections["adapter"] = adapter_config(cfg)
        return sections

    def data(self, cfg: dict, run: RunFolder, sections: dict) -> dict:
        return resolve_data(cfg)

    def build(self, cfg: dict, run: RunFolder, sections: dict, data: dict) -> Fit:
        opts, tcfg, acfg = sections["trainer"], sections["optim"], sections["adapter"]
        dcfg, extra = decode_config(cfg)
        sets = tuple(extra.get("sets", ("test", "heldout")))
        train_utts, test_utts = read_manifest(data["train"]), evaluate_utterances(data, sets)
        backbone = _section(cfg, "backbone")
        model = load_whisper(backbone.get("name"))
        max_duration = float(_section(cfg, "data").get("max_duration", 30.0))
        dataset = SpeechDataset(
            train_utts, model, backbone.get("language", "en"), sections["augment"], max_duration,
            opts.seed,
        )
        sampler = StepSampler(
            len(dataset), tcfg.batch_size, opts.max_steps * opts.accumulate, opts.seed
        )
        collate = make_collate(dataset.prompt_len, dataset.tokenizer.eot)
        loader = DataLoader(
            SeededItems(dataset),
            batch_sampler=sampler,
            num_workers=tcfg.num_workers,
            collate_fn=collate,
        )
        calibration = Calibration.from_sampler(  # the run's own batches (LQ-LoRA's Fisher)
            SeededItems(dataset), sampler,
            lambda b: sequence_loss(model.decoder(b["inputs"], model.encoder(b["mels"])),
                                    b["labels"]),
            collate,
        )
        torch.manual_seed(opts.seed)  # the adapter init: the same in every run of this config
        # quantized first (backbone.quantize)
        report = sections["base"].inject(model, acfg, calibration=calibration)
        qreport = sections["base"].report
        log.info("%s", report)
        if qreport is not None:
            log.info("%s", qreport)
        val = (
            ValidationWER(read_manifest(data["val"]), dcfg, tcfg.val_every, tcfg.patience)
            if data["val"]
            else None
        )
        return Fit(
            method=acfg.method,
            module=WhisperAdapterModule(model, tcfg, cache_ok=dataset.deterministic),
            loader=loader,
            sampler=sampler,
            callbacks=[val] if val else [],
            trainable_parameters=report.trainable,
            adapted_layers=len(report.layers),
            state={"model": model, "report": report, "qreport": qreport, "val": val,
                   "test": test_utts},
        )

    def save(self, fit: Fit, run: RunFolder) -> None:
        save_adapter(fit.state["model"], run.adapter)

    def metrics(self, cfg: dict, run: RunFolder, fit: Fit, sections: dict) -> dict:
        s = fit.state
        model, val = s["model"], s["val"]
        metrics = evaluate_model(model, s["test"], cfg, run)
        metrics.update(
            {
                "total_parameters": s["report"].total,
                "train_steps": fit.steps,  # the old name of steps
                "train_seconds": round(fit.train_seconds, 1),
                "seconds_per_step": round(fit.train_seconds / max(fit.steps, 1), 3),
                "model": _section(cfg, "backbone").get("name"),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            metrics["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if val is not None:
            metrics.update(
                val_wer=val.best,
                best_val_step=val.best_step,
                val_history=[list(h) for h in val.history],
            )
        _, extra = decode_config(cfg)
        if extra.get("export"):
            written = export_run(model, run.path / "export", tuple(extra["export"]))
            metrics["exported"] = {k: str(v) for k, v in written.items()}
            if "quantized" in written:
                errors = json.loads(
                    (written["quantized"].parent / "quantized_merge_error.json").read_text()
                )
                metrics["quantized_merge_error_max"] = round(errors["max"], 6)
        return metrics

    def needs_adapter(self, cfg: dict) -> bool:
        return True

    def evaluate(self, cfg: dict, run: RunFolder, suite: str) -> dict:
        data = resolve_data(cfg)
        model = load_whisper(_section(cfg, "backbone").get("name"))
        self.quantized_base(cfg, run).restore(model)
        load_adapter(model, run.adapter)
        sets = tuple(decode_config(cfg)[1].get("sets", ("test", "heldout")))
        utts = evaluate_utterances(data, sets)
        return {**run.read_metrics(), **evaluate_model(model, utts, cfg, run)}

    def old_eval(self, run: RunFolder, metrics: dict, suite: str) -> None:
        run.write_metrics(metrics)  # the old place, kept for one release


PIPELINE = ASRPipeline()


def train(cfg: dict, out: Path, callbacks: list | None = None) -> dict:
    """Inject the adapter, train with Lightning, save, evaluate; returns the metrics.

    Every section is validated before data is generated or the run folder is made.
    Re-running the same command after a crash resumes from ``checkpoints/last.ckpt`` and
    ends where an uninterrupted run ends (``resumed_from_step`` records where it picked up).
    """
    return run_training(PIPELINE, cfg, out, callbacks)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (MB; Linux ``ru_maxrss`` is in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def evaluate(run_dir: Path, overrides: dict) -> dict:
    """Recompute a run's metrics from its saved adapter. ``overrides``: eval keys
    (``beam_size=5``) or dotted config keys (``data.test=other.jsonl``)."""
    return run_eval(PIPELINE, run_dir, overrides)
