"""One training run and one evaluation for every pipeline (clip, cod, ood, asr).

A pipeline says what is its own and nothing else (the continual ``Domain`` protocol has the
same shape; each task of a continual sequence is one run of ``TaskRun`` in
``lorakit.data.continual.task_run``)::

    name, config           its name and light config module (DEFAULTS, check: no torch)
    renamed                old config section names still read (lorakit.data.vocabulary)
    check(cfg)             the typed sections, every one validated before any work
    resolve(cfg, out, s)   the config as config.yaml records it (e.g. generated data roots)
    data(cfg, run, s)      generate / read the data (after the run folder is opened)
    build(cfg, run, s, d)  the model with its adapter injected, as a ``Fit`` (module, loader,
                           sampler, callbacks, method, parameter counts)
    after_fit(fit, run, trainer, s)   rank 0, before saving: further rounds (cod self-training)
    save(fit, run)         the adapter into run/adapter
    metrics(cfg, run, fit, s)         the evaluation after training (the headline metrics)
    outputs(run, fit, metrics)        further files: per-class tables, plots
    quant_keep             modules never quantized (a head that trains in full)

    eval_config(cfg, overrides)       ``lorakit eval --set``: the config to evaluate, suite
    evaluate(cfg, run, suite)         the metrics of a trained run folder
    old_eval(run, metrics, suite)     the file ``eval`` wrote before (kept for one release)

``run_training`` does the rest, the same for all: upgrade old section names, check, set CPU
threads, open the run (a changed config is refused before anything is written), write
config.yaml, build, Lightning fit with exact resume (``build_trainer``: DDP, precision,
checkpoints), return ``{}`` on ranks other than 0, save the adapter, write ``metrics.json``
with the common keys (``method``, ``steps``, ``resumed_from_step``, ``trainable_parameters``,
``adapted_layers``) and the training curve.

A quantized base (``backbone.quantize``, the same spec in every pipeline) is the shared
run's too: ``check`` validates the spec, ``build`` finds a ``QuantizedBase`` in
``sections["base"]`` and injects through it (``base.inject(model, adapter_cfg)``, or
``base.quantize(model)`` with no adapter), the run keeps the codes in
``base_quantized.safetensors`` and metrics.json records them under ``quantized``;
``evaluate`` (and ``predict``) turn the rebuilt float model back into that base with
``quantized_base(cfg, run).restore(model)`` before loading the adapter. ``run_eval`` reads the stored config, applies the
overrides, checks that the adapter is there and writes ``eval/<suite>.json``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit.data import run_lock
from lorakit.data.plots import plot_training_curve
from lorakit.data.results import write_eval
from lorakit.data.runs import RunFolder, open_run, set_dotted
from lorakit.data.vocabulary import upgrade_config, upgrade_run_folder
from lorakit.data.weight_methods import is_replacement

from .options import trainer_options
from .quantized import QuantizedBase, backbone_quant_options
from .trainer import build_trainer, resumed_from_step

COMMON_KEYS = ("method", "steps", "resumed_from_step", "trainable_parameters", "adapted_layers")


@dataclass
class Fit:
    """What a pipeline's ``build`` hands the shared run."""

    method: str
    module: Any = None  # the AdapterModule; None: nothing to train (SAM zero-shot)
    loader: Iterable | None = None  # None: the module's own train_dataloader
    sampler: Any = None  # the resumable data position (StepSampler / StepBatches)
    callbacks: list = field(default_factory=list)  # the pipeline's own, before the caller's
    trainable_parameters: int | None = None
    adapted_layers: int | None = None
    state: dict = field(default_factory=dict)  # what the pipeline's later steps need
    steps: int = 0  # optimizer steps after the fit (cod self-training rounds)
    train_seconds: float = 0.0


class Pipeline:
    """The base of the four pipelines: the hooks ``run_training``/``run_eval`` call, with
    defaults where most pipelines agree."""

    name: str = ""
    config: Any = None  # the light config module (DEFAULTS, check)
    renamed: tuple = ()
    curve_file: str | None = "training_curve.png"  # None: no training curve
    curve_keys: tuple[str, ...] | None = None  # None: plot_training_curve's default
    adapter_file: str = "adapter_config.json"  # present in run/adapter once trained
    quant_keep: tuple[str, ...] = ()  # modules a quantized base leaves float (they train)
    # --------------------------------------------------------------- training

    def check(self, cfg: dict) -> dict:
        from .methods import check_method_supported

        sections = self.config.check(cfg)
        for section in sections.values():  # the checks the light config left (the registry)
            if hasattr(section, "validate_light") and hasattr(section, "validate"):
                section.validate()
        sections["trainer"] = trainer_options(cfg.get("trainer"))  # + devices, strategy
        method = (cfg.get("adapter") or {}).get("method")
        if method is not None and method != "none":
            check_method_supported(method)
        sections["quantize"] = backbone_quant_options(cfg)
        if sections["quantize"] is not None and is_replacement(method):
            raise ValueError(f"backbone.quantize: adapter.method {method} trains the replaced "
                             "layers in full, and quantized codes are frozen; drop one of them")
        return sections

    def resolve(self, cfg: dict, out: Path, sections: dict) -> dict:
        return cfg

    def data(self, cfg: dict, run: RunFolder, sections: dict) -> Any:
        return None

    def build(self, cfg: dict, run: RunFolder, sections: dict, data: Any) -> Fit:
        raise NotImplementedError

    def after_fit(self, fit: Fit, run: RunFolder, trainer, sections: dict) -> dict:
        return {}

    def save(self, fit: Fit, run: RunFolder) -> None:
        raise NotImplementedError

    def metrics(self, cfg: dict, run: RunFolder, fit: Fit, sections: dict) -> dict:
        return {}

    def outputs(self, run: RunFolder, fit: Fit, metrics: dict) -> None:
        pass

    # --------------------------------------------------------------- evaluation

    def eval_config(self, cfg: dict, overrides: dict) -> tuple[dict, str]:
        """The light config's ``eval_config`` (no torch: the CLI checks ``eval --set`` with
        it first), else dotted overrides set into the stored config; the suite is ``all``."""
        if hasattr(self.config, "eval_config"):
            return self.config.eval_config(cfg, overrides)
        for key, value in overrides.items():
            set_dotted(cfg, key, value)
        return cfg, "all"

    def quantized_base(self, cfg: dict, run: RunFolder | Path) -> QuantizedBase:
        """The run's quantized base as ``evaluate`` / ``predict`` restore it (a no-op for a
        float run)."""
        path = run.path if isinstance(run, RunFolder) else Path(run)
        return QuantizedBase(backbone_quant_options(cfg), path, self.quant_keep)

    def needs_adapter(self, cfg: dict) -> bool:
        return (cfg.get("adapter") or {}).get("method") != "none"

    def evaluate(self, cfg: dict, run: RunFolder, suite: str) -> dict:
        raise NotImplementedError

    def old_eval(self, run: RunFolder, metrics: dict, suite: str) -> None:
        pass


def set_threads(cfg: dict) -> None:
    """``runtime.threads``: torch's CPU threads (unset: torch's default)."""
    threads = (cfg.get("runtime") or {}).get("threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def run_training(pipeline: Pipeline, cfg: dict, out: str | Path, callbacks=None) -> dict:
    """Train as ``cfg`` says into the run folder ``out``; the metrics (``{}`` off rank 0).

    Re-running the same call after a crash resumes from ``checkpoints/last.ckpt`` and ends
    where an uninterrupted run ends (``resumed_from_step`` records where it picked up).
    """
    out = Path(out)
    cfg = upgrade_config(cfg, pipeline.renamed)
    sections = pipeline.check(cfg)
    cfg = pipeline.resolve(cfg, out, sections)
    opts = sections["trainer"]
    set_threads(cfg)
    upgrade_run_folder(out, pipeline.renamed)  # a run started before the renames resumes
    run = open_run(out, cfg, opts.resume)  # a changed config is refused before any write
    try:
        return _train_in(pipeline, cfg, run, sections, callbacks)
    finally:
        run_lock.release(run.path)


def _train_in(pipeline: Pipeline, cfg: dict, run: RunFolder, sections: dict, callbacks) -> dict:
    """``run_training`` once the folder is open (and locked by this process)."""
    opts = sections["trainer"]
    data = pipeline.data(cfg, run, sections)
    run.write_config(cfg)
    base = sections["base"] = QuantizedBase(sections["quantize"], run.path, pipeline.quant_keep)
    fit = pipeline.build(cfg, run, sections, data)
    if base.enabled and base.report is None:
        raise ValueError(f"backbone.quantize: the {pipeline.name} pipeline did not quantize "
                         f"its base for adapter.method {fit.method!r}")
    common = {"method": fit.method}
    if fit.module is not None:
        trainer, ckpt = build_trainer(
            opts, run, [*fit.callbacks, *(callbacks or [])], sampler=fit.sampler
        )
        start = time.perf_counter()
        trainer.fit(fit.module, fit.loader, ckpt_path=ckpt)
        fit.train_seconds = time.perf_counter() - start
        if not trainer.is_global_zero:
            return {}
        fit.steps = int(trainer.global_step)
        extra = pipeline.after_fit(fit, run, trainer, sections)
        pipeline.save(fit, run)
        common |= {
            "steps": fit.steps,
            "resumed_from_step": resumed_from_step(trainer),
            "trainable_parameters": fit.trainable_parameters,
            "adapted_layers": fit.adapted_layers,
            **extra,
        }
    metrics = {**common, **base.metrics(), **pipeline.metrics(cfg, run, fit, sections)}
    pipeline.outputs(run, fit, metrics)
    if fit.module is not None and pipeline.curve_file:
        plot_training_curve(
            run.logs / "metrics.csv",
            run.plots / pipeline.curve_file,
            **({"keys": pipeline.curve_keys} if pipeline.curve_keys else {}),
        )
    run.write_metrics(metrics)
    return metrics


def run_eval(pipeline: Pipeline, run: str | Path, overrides: dict) -> dict:
    """Recompute a trained run's metrics from its saved adapter into ``eval/<suite>.json``
    (and the file the pipeline wrote before, for one release)."""
    folder = RunFolder(run)
    cfg = upgrade_config(folder.read_config(), pipeline.renamed, str(folder.path / "config.yaml"))
    cfg, suite = pipeline.eval_config(cfg, dict(overrides))
    set_threads(cfg)
    if pipeline.needs_adapter(cfg) and not (folder.adapter / pipeline.adapter_file).is_file():
        raise ValueError(
            f"run folder {folder.path} has no trained adapter ({folder.adapter / pipeline.adapter_file} "
            f"is missing): train first (lorakit train {pipeline.name} ... --out {folder.path})"
        )
    metrics = pipeline.evaluate(cfg, folder, suite)
    pipeline.old_eval(folder, metrics, suite)
    write_eval(folder.path, metrics, suite)
    return metrics
