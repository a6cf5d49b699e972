"""``lorakit train cod`` / ``lorakit eval cod``: weakly supervised camouflaged object
detection with SAM + FoRA (or LoRA, or SAM zero-shot with ``adapter.method: none``).

Data: ``data.train`` is a COD folder (``Imgs/``, ``GT/``, ``Scribble/``, points/boxes
JSON) and ``data.test`` maps names to COD folders; left empty, camouflage scenes are
generated into ``data.cache`` (``lorakit.data.camouflage``). The run folder gets
``metrics.json`` (headline ``s_measure`` and ``mae``: the mean over test sets; per set
under ``datasets``; the zero-shot SAM scores with the same prompts under ``zero_shot``:
always the float SAM, so a run on a quantized base (``backbone.quantize``) compares with
the float model; such a run also records ``zero_shot_quantized``, the plainly quantized SAM,
and a quantized zero-shot run, scored on its quantized base, gets the float ``zero_shot``),
``adapter/``, ``plots/overlays_<set>.png``, ``plots/training_curve.png``, logs and
checkpoints.

Box supervision (FCL-COD's setting): ``prompts: {labels: box, mode: box}``. Self-training
(``selftrain.rounds`` > 0): after the weakly supervised fit, rounds of teacher pseudo-labels
on the training images continue the training (``selftrain.py``; per-round pseudo-label
quality under ``selftrain``). Distillation (``distill.enabled``): a prompt-free torchvision
network trained on the final pseudo-labels, saved in ``distilled/``, scored on the same
test sets under ``distilled`` (``distill.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from lorakit.core import named_hosts, trainable_parameters
from lorakit.data.camouflage import CamouflageSpec, ensure_cod
from lorakit.data.cod import CODFolder
from lorakit.data.runs import RunFolder, dataclass_from
from lorakit.data.runtime import (
    SeededItems,
    StepSampler,
)
from lorakit.data.runtime.pipeline import Fit, Pipeline, run_eval, run_training
from lorakit.data.runtime.quantized import (
    Calibration,
    QuantizedBase,
    backbone_quant_options,
)

from . import config
from .build import BackboneConfig, build_sam
from .config import DATA_DEFAULTS, DEFAULTS, EVAL_DEFAULTS, check  # noqa: F401  (old names)
from .dataset import CODTrainSet
from .distill import evaluate_student, save_student, train_student
from .evaluate import evaluate_folder, overlay_grid
from .model import AdapterSpec, SamCOD
from .prompts import PromptOptions
from .selftrain import pseudo_labels, run_rounds, teacher_of
from .train import CODModule, supervised_loss


def _section(cfg: dict, name: str, cls):
    obj = dataclass_from(cls, dict(cfg.get(name) or {}), name)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


def _generated(cfg: dict, split: str) -> Path:
    d = cfg["data"]
    n = d["n_train"] if split == "train" else d["n_test"]
    seed = d["seed"] + (0 if split == "train" else 7919)  # test scenes never repeat training ones
    cue = d.get("cue", DATA_DEFAULTS["cue"])
    spec = CamouflageSpec(
        n=n, size=d["size"], difficulty=float(d["difficulty"]), seed=seed, cue=cue
    )
    tag = "" if cue == "texture" else f"-{cue}"
    name = f"{split}-n{n}-px{spec.size}-d{spec.difficulty:g}-seed{seed}{tag}"
    return ensure_cod(Path(d["cache"]) / name, spec)


def train_folder(cfg: dict, prompts: PromptOptions) -> CODFolder:
    root = cfg["data"].get("train") or _generated(cfg, "train")
    return CODFolder(root, need_gt=False, weak=prompts.weak)


def test_folders(cfg: dict, prompts: PromptOptions) -> dict[str, CODFolder]:
    test = cfg["data"].get("test") or {"synthetic": _generated(cfg, "test")}
    if not isinstance(test, dict):
        raise ValueError(f"data.test must map set names to COD folders, got {test!r}")
    return {name: CODFolder(root, need_gt=True, weak=prompts.weak) for name, root in test.items()}


def evaluate_all(
    model: SamCOD,
    folders: dict[str, CODFolder],
    prompts: PromptOptions,
    ev: dict,
    plots: Path | None,
    tag: str,
) -> dict:
    """Per-set scores, their mean as the headline, and one overlay grid per set."""
    per = {}
    for name, folder in folders.items():
        per[name], kept = evaluate_folder(
            model, folder, prompts, ev["seed"], ev["grid"], ev.get("progress", False)
        )
        if plots is not None and kept:
            overlay_grid(
                kept, plots / f"overlays_{name}{tag}.png", f"{name}: S={per[name]['s_measure']:.3f}"
            )
    return mean_over_sets(per)


def mean_over_sets(per: dict[str, dict]) -> dict:
    """The headline scores (mean over test sets) with the per-set scores under ``datasets``."""
    keys = ("s_measure", "mae", "e_measure_mean", "e_measure_max", "weighted_f")
    out = {k: sum(p[k] for p in per.values()) / len(per) for k in keys}
    out["datasets"] = per
    return out


def backbone_config(cfg: dict) -> BackboneConfig:
    """The ``backbone:`` section; a pretrained tiny SAM is cached next to the generated data."""
    bb = _section(cfg, "backbone", BackboneConfig)
    if bb.cache is None:
        bb.cache = str(Path((cfg.get("data") or {}).get("cache") or DATA_DEFAULTS["cache"]))
    return bb


def _zero_shot(cfg: dict, folders, prompts, ev, plots, quantized: bool = False) -> dict:
    """The zero-shot SAM's scores with the run's prompts: the float SAM, or (``quantized``)
    the same SAM plainly quantized as ``backbone.quantize`` says (no adapter, no absorbed
    error; nothing is written to the run folder)."""
    base = build_sam(backbone_config(cfg))
    model = SamCOD(base, AdapterSpec(method="none"))
    if quantized:
        QuantizedBase(backbone_quant_options(cfg), None, PIPELINE.quant_keep).quantize(model.sam)
    suffix = "_zero_shot_quantized" if quantized else "_zero_shot"
    res = evaluate_all(model, folders, prompts, ev, plots, suffix)
    return {k: v for k, v in res.items()}


def zero_shots(cfg: dict, folders, prompts, ev, plots, method: str) -> dict:
    """``eval.zero_shot`` baselines: ``zero_shot`` is always the float SAM (the honest
    reference for a quantized run too); a quantized run with an adapter also gets
    ``zero_shot_quantized`` (the plainly quantized SAM: what quantization alone costs).
    A zero-shot run (``adapter.method: none``) is scored on its own base already: it gets
    the float SAM's ``zero_shot`` only when that base is quantized."""
    if not ev["zero_shot"]:
        return {}
    quantized = backbone_quant_options(cfg) is not None
    out = {}
    if method != "none" or quantized:
        out["zero_shot"] = _zero_shot(cfg, folders, prompts, ev, plots)
    if method != "none" and quantized:
        out["zero_shot_quantized"] = _zero_shot(cfg, folders, prompts, ev, plots, True)
    return out


class CodPipeline(Pipeline):
    """SAM + FoRA on camouflage: the hooks of the shared run
    (``lorakit.data.runtime.pipeline``); self-training rounds and distillation follow the
    weakly supervised fit."""

    name, config = "cod", config
    curve_keys = ("train_loss", "train_pbce", "train_contrastive", "train_consistency")

    def check(self, cfg: dict) -> dict:
        sections = super().check(cfg)
        backbone_config(cfg)
        return sections

    def data(self, cfg: dict, run: RunFolder, sections: dict) -> dict[str, CODFolder]:
        return test_folders(cfg, sections["prompts"])

    def build(self, cfg: dict, run: RunFolder, sections: dict, folders) -> Fit:
        prompts, spec, opts = sections["prompts"], sections["adapter"], sections["trainer"]
        optim, ev = sections["optim"], {**config.EVAL_DEFAULTS, **(cfg.get("eval") or {})}
        L.seed_everything(opts.seed, verbose=False)
        base = sections["base"]  # backbone.quantize: the adapter goes in on quantized codes
        sam = build_sam(backbone_config(cfg))
        calibration = folder = data = sampler = None
        if spec.method != "none":
            with torch.random.fork_rng(devices=[]):  # the adapter init draws as before
                folder = train_folder(cfg, prompts)
                data = CODTrainSet(folder, prompts, int(sam.image_encoder.img_size),
                                   augment=True, seed=opts.seed)
            sampler = StepSampler(
                len(data), optim.batch_size, opts.max_steps * opts.accumulate, opts.seed
            )
            box = prompts.labels == "box"

            def calibration(m):  # the run's own batches (LQ-LoRA's fisher: true)
                return Calibration.from_sampler(SeededItems(data), sampler, lambda b: (
                    supervised_loss(m, b, sections["loss"], prompts.mode, box)))

        model = SamCOD(sam, spec, inject_fn=base.inject, calibration=calibration)
        state = {"model": model, "folders": folders, "ev": ev}
        if spec.method == "none":
            base.quantize(model.sam)  # zero-shot on the quantized base
            return Fit(method="none", state=state)
        module = CODModule(
            model, sections["loss"], optim, prompts.mode, box_labels=prompts.labels == "box"
        )
        return Fit(
            method=spec.method,
            module=module,
            loader=DataLoader(SeededItems(data), batch_sampler=sampler, num_workers=0),
            sampler=sampler,
            trainable_parameters=trainable_parameters(model).numel,
            adapted_layers=len(named_hosts(model)),
            state=state | {"train": folder},
        )

    def after_fit(self, fit: Fit, run: RunFolder, trainer, sections: dict) -> dict:
        """Self-training rounds (``selftrain.rounds``): more steps, on pseudo-labels."""
        st = sections["selftrain"]
        if not st.rounds:
            return {"train_seconds": round(fit.train_seconds, 2)}
        t0 = time.perf_counter()
        fit.module, rounds = run_rounds(
            fit.module, fit.state["train"], sections["prompts"], st, sections["trainer"],
            run.path / "rounds", sections["loss"], sections["optim"],
        )
        fit.steps += sum(r["steps"] for r in rounds)
        seconds = fit.train_seconds + time.perf_counter() - t0
        return {"selftrain": rounds, "train_seconds": round(seconds, 2)}

    def save(self, fit: Fit, run: RunFolder) -> None:
        fit.state["model"].float().save(run.adapter)

    def metrics(self, cfg: dict, run: RunFolder, fit: Fit, sections: dict) -> dict:
        prompts, s = sections["prompts"], fit.state
        metrics = evaluate_all(s["model"].cpu(), s["folders"], prompts, s["ev"], run.plots, "")
        if fit.module is None:
            return metrics | zero_shots(cfg, s["folders"], prompts, s["ev"], run.plots, "none")
        dist = sections["distill"]
        if dist.enabled:
            metrics["distilled"] = distil_stage(
                teacher_of(fit.module).cpu(), s["train"], s["folders"], prompts,
                sections["selftrain"], dist, run,
            )
        metrics.update(zero_shots(cfg, s["folders"], prompts, s["ev"], run.plots, fit.method))
        return metrics

    def evaluate(self, cfg: dict, run: RunFolder, suite: str) -> dict:
        prompts = _section(cfg, "prompts", PromptOptions)
        ev = {**config.EVAL_DEFAULTS, **(cfg.get("eval") or {})}
        folders = test_folders(cfg, prompts)
        model = load_model(run, cfg)
        kept = ("trainable_parameters", "adapted_layers", "steps", "train_seconds")
        metrics = {k: v for k, v in run.read_metrics().items() if k in kept}
        metrics["method"] = model.spec.method
        metrics.update(evaluate_all(model, folders, prompts, ev, run.plots, ""))
        metrics.update(zero_shots(cfg, folders, prompts, ev, run.plots, model.spec.method))
        return metrics

    def old_eval(self, run: RunFolder, metrics: dict, suite: str) -> None:
        run.write_metrics(metrics)  # the old place, kept for one release


PIPELINE = CodPipeline()


def _check(cfg: dict) -> tuple:
    """The typed sections ``(prompts, adapter, loss, optim, trainer)``, every section
    validated before any data is generated or folder made."""
    s = PIPELINE.check(cfg)
    return s["prompts"], s["adapter"], s["loss"], s["optim"], s["trainer"]


def train(cfg: dict, out: Path, callbacks: list | None = None) -> dict:
    """Train (weak labels only), save the adapter, evaluate; returns the metrics dict.

    Re-running the same command after a crash resumes from ``checkpoints/last.ckpt`` and
    ends where an uninterrupted run ends (``resumed_from_step`` records where it picked up).
    """
    return run_training(PIPELINE, cfg, out, callbacks)


def distil_stage(teacher, folder, folders, prompts, st, dist, run: RunFolder) -> dict:
    """Pseudo-label the training images with ``teacher``, train the prompt-free student on
    them, save it in ``distilled/`` and score it on every test set."""
    pseudo, _ = pseudo_labels(teacher, folder, prompts, st.fg, st.bg, dist.seed)
    t0 = time.perf_counter()
    net = train_student(pseudo, folder, dist)
    seconds = round(time.perf_counter() - t0, 2)
    save_student(net, dist, run.path / "distilled")
    per = {name: evaluate_student(net, f, dist.size) for name, f in folders.items()}
    return {"arch": dist.arch, "train_seconds": seconds, **mean_over_sets(per)}


def load_model(run: RunFolder, cfg: dict) -> SamCOD:
    """The trained model of a run folder (base rebuilt from ``backbone:``, adapter loaded)."""
    spec = _section(cfg, "adapter", AdapterSpec)
    sam = build_sam(backbone_config(cfg))
    base = PIPELINE.quantized_base(cfg, run)  # a quantized run's codes (a no-op otherwise)
    if spec.method == "none":
        model = SamCOD(sam, spec)
        base.restore(model.sam)
        return model
    if not (run.adapter / "adapter_config.json").is_file():
        raise ValueError(f"run folder {run.path} has no trained adapter ({run.adapter} is missing)")
    return SamCOD.load(sam, spec, run.adapter, restore=base.restore)


def adapted_model(run: Path) -> torch.nn.Module:
    """The SAM the run's adapter is loaded into (base rebuilt from ``backbone:``): where
    ``lorakit squeeze`` reads an adapter that needs its base."""
    folder = RunFolder(run)
    return load_model(folder, folder.read_config()).sam


def evaluate(run: Path, overrides: dict) -> dict:
    """Recompute a run's metrics from its saved adapter; ``overrides`` are dotted keys
    (``data.test``, ``eval.zero_shot``, ``prompts.mode`` ...)."""
    return run_eval(PIPELINE, run, overrides)
