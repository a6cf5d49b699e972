"""``lorakit train ood`` / ``lorakit eval ood``: fine-tune on ID data, measure under shift.

    train(cfg, out)        build the backbone, prepare the method, fit with Lightning, save
                           run/adapter, evaluate (ID, OOD sets, corruptions, WiSE-FT sweep),
                           write metrics.json and plots
    evaluate(run, overr.)  rebuild the backbone, load run/adapter, recompute the metrics

Data (``data:``): ``kind: shift`` generates the shape task of ``lorakit.data.shift`` into
``root`` (reused when its parameters match); ``kind: folders`` reads ``id_train``,
``id_test`` and ``ood`` ({name, root, class_map}) ImageFolder trees sharing ``classes``
(default: the sub-folders of ``id_train``).
"""

from __future__ import annotations

import copy
import logging
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lorakit.core import named_hosts, trainable_parameters
from lorakit.data.runs import RunFolder, dataclass_from, write_json
from lorakit.data.runtime import (
    SeededItems,
    StepSampler,
)
from lorakit.data.runtime.pipeline import (
    Fit,
    Pipeline,
    run_eval,
    run_training,
    set_threads,  # noqa: F401  (an old name)
)
from lorakit.data.runtime.quantized import Calibration
from lorakit.data.runtime.replaced import replaced_layers
from lorakit.data.shift import ShiftTask, write_shift_task
from lorakit.data.weight_methods import is_replacement

from . import config, plots
from .build import BackboneConfig, build_backbone, init_head
from .config import DEFAULTS, RENAMED, DataConfig, check  # noqa: F401  (old names)
from .data import EvalSet, ImageFolderSet
from .evaluate import EvalConfig, Suite, evaluate_model, parts_for
from .methods import load_weights, plain_state, prepare, replacement, save_weights, wise_model
from .robustness import baseline_points, effective_robustness, fit_line
from .train import (
    LargoMonitor,
    OODModule,
    RandomFlip,
    largo_summary,
    read_largo_csv,
)

log = logging.getLogger(__name__)


def resolve_data(section: dict) -> dict:
    """``{"classes", "id_train", "id_test", "ood": {name: {"root", "class_map"}}}``."""
    d = dataclass_from(DataConfig, section, "data")
    if d.kind == "shift":
        return write_shift_task(d.root, dataclass_from(ShiftTask, d.shift, "data.shift"))
    if d.kind != "folders":
        raise ValueError(f"data.kind must be 'shift' or 'folders', got {d.kind!r}")
    for key in ("id_train", "id_test"):
        if not getattr(d, key) or not Path(getattr(d, key)).is_dir():
            raise ValueError(f"data.{key}: folder {getattr(d, key)!r} does not exist")
    classes = d.classes or sorted(p.name for p in Path(d.id_train).iterdir() if p.is_dir())
    ood = {}
    for i, item in enumerate(d.ood):
        if not isinstance(item, dict) or "root" not in item:
            raise ValueError(
                f"data.ood[{i}] must be a mapping with 'root' (and optional name, class_map)"
            )
        ood[item.get("name", Path(item["root"]).name)] = {
            "root": item["root"],
            "class_map": item.get("class_map", "auto"),
        }
    return {"classes": classes, "id_train": d.id_train, "id_test": d.id_test, "ood": ood}


def make_suite(desc: dict, size: int, ecfg: EvalConfig, cache: bool = False) -> Suite:
    classes = desc["classes"]
    sets = []
    extra = {e.get("name", Path(e["root"]).name): e for e in ecfg.ood}
    for name, spec in {**desc["ood"], **extra}.items():
        ds = ImageFolderSet(spec["root"], classes, size, spec.get("class_map", "auto"))
        sets.append(EvalSet(name, ds, ds.present if len(ds.present) < len(classes) else None))
    return Suite(ImageFolderSet(desc["id_test"], classes, size), sets, ecfg, cache)


def build_model(cfg: dict, desc: dict, batch_size: int = 256):
    """The pretrained classifier (head initialised) and its default adapter targets."""
    bcfg = dataclass_from(BackboneConfig, cfg["backbone"], "backbone")
    built = build_backbone(bcfg, desc["classes"])
    if built.head_source == "pending":
        mode = "zero" if bcfg.head_init == "zero" else "prototype"
        train = ImageFolderSet(desc["id_train"], desc["classes"], built.image_size)
        init_head(built.model, mode, DataLoader(train, batch_size=batch_size))
    return built


def wise_sweep(pretrained, model, suite: Suite, alphas: list[float]) -> list[dict]:
    """ID and OOD accuracy of WiSE-FT models between ``pretrained`` and the fine-tuned model."""
    pre, ft = pretrained.state_dict(), plain_state(model)
    rows = []
    for a in alphas:
        m = evaluate_model(wise_model(pretrained, pre, ft, float(a)), suite, ("id", "ood"))
        rows.append(
            {
                "alpha": float(a),
                "id_accuracy": m["id_accuracy"],
                "ood_accuracy": m.get("ood_accuracy"),
            }
        )
        log.info("WiSE-FT alpha %.2f: id %.3f ood %s", a, m["id_accuracy"], m.get("ood_accuracy"))
    return rows


def _robustness(metrics: dict, wise: list[dict], baselines: list, run: RunFolder) -> None:
    """Effective robustness against the baselines' line, and the ID-vs-OOD plot."""
    base = baseline_points(baselines)
    line = fit_line([(i, o) for _, i, o in base])
    if "ood_accuracy" in metrics:
        metrics["effective_robustness"] = effective_robustness(
            line, metrics["id_accuracy"], metrics["ood_accuracy"]
        )
    points = {n: (i, o) for n, i, o in base}
    curve = [(r["id_accuracy"], r["ood_accuracy"]) for r in wise if r["ood_accuracy"] is not None]
    if "ood_accuracy" in metrics:
        points["this run"] = (metrics["id_accuracy"], metrics["ood_accuracy"])
        if curve:
            points["pretrained"] = curve[0] if wise[0]["alpha"] == 0 else points["this run"]
        plots.id_vs_ood(
            points, run.plots / "id_vs_ood.png", line, {"WiSE-FT": curve} if curve else None
        )


class OODPipeline(Pipeline):
    """Fine-tune on ID data, measure under shift: the hooks of the shared run
    (``lorakit.data.runtime.pipeline``)."""

    name, config, renamed = "ood", config, RENAMED
    curve_file = "training.png"
    adapter_file = "ood_method.json"  # save_weights: adapters, a linear probe or all weights
    quant_keep = ("head",)  # the class head trains (linear probe, train_head): kept float

    def check(self, cfg: dict) -> dict:
        sections = super().check(cfg)
        if sections["quantize"] is not None and sections["adapter"].method == "full":
            raise ValueError("backbone.quantize: adapter.method full trains every weight, and "
                             "quantized codes are frozen; choose an adapter method or linear_probe")
        mcfg = sections["adapter"]
        if is_replacement(mcfg.method):  # its values checked before any work (targets later)
            replacement(mcfg, ("mlp",))
        return sections

    def data(self, cfg: dict, run: RunFolder, sections: dict) -> dict:
        return resolve_data(cfg["data"])

    def build(self, cfg: dict, run: RunFolder, sections: dict, desc: dict) -> Fit:
        opts, mcfg, ocfg = sections["trainer"], sections["adapter"], sections["optim"]
        torch.manual_seed(opts.seed)
        built = build_model(cfg, desc, sections["eval"].batch_size)
        model = built.model
        base = sections["base"]
        # WiSE-FT interpolates float weights: a quantized base (frozen codes) has no sweep
        pretrained = None if base.enabled else copy.deepcopy(model)
        train_set = ImageFolderSet(desc["id_train"], desc["classes"], built.image_size)
        sampler = StepSampler(
            len(train_set), ocfg.batch_size, opts.max_steps * opts.accumulate, opts.seed
        )
        items = SeededItems(RandomFlip(train_set, ocfg.flip))
        loader = DataLoader(items, batch_sampler=sampler, num_workers=ocfg.num_workers)
        calibration = Calibration.from_sampler(  # the run's own batches (LQ-LoRA's Fisher)
            items, sampler, lambda b: F.cross_entropy(model(b[0]), b[1]))
        if mcfg.method == "linear_probe":
            base.quantize(model)
        summary = prepare(model, mcfg, built.targets,
                          inject_fn=partial(base.inject, calibration=calibration))
        replaced_cfg = replacement(mcfg, built.targets) if is_replacement(mcfg.method) else None
        log.info("%s", summary)
        monitor = LargoMonitor(run.logs / "largo.csv")
        return Fit(
            method=mcfg.method,
            module=OODModule(model, ocfg, opts.max_steps, full=mcfg.method == "full"),
            loader=loader,
            sampler=sampler,
            callbacks=[monitor],
            trainable_parameters=trainable_parameters(model).numel,
            adapted_layers=len(named_hosts(model)) + len(replaced_layers(model)),
            state={"built": built, "pretrained": pretrained, "desc": desc, "summary": summary,
                   "monitor": monitor, "replaced": replaced_cfg},
        )

    def save(self, fit: Fit, run: RunFolder) -> None:
        save_weights(fit.state["built"].model, fit.method, run.adapter, fit.state["replaced"])

    def metrics(self, cfg: dict, run: RunFolder, fit: Fit, sections: dict) -> dict:
        s, ecfg = fit.state, sections["eval"]
        model = s["built"].model
        suite = make_suite(s["desc"], s["built"].image_size, ecfg)
        metrics = {"trainable": s["summary"], **evaluate_model(model, suite)}
        sweep = ecfg.wise_alphas and s["pretrained"] is not None
        metrics["wise"] = wise_sweep(s["pretrained"], model, suite, ecfg.wise_alphas) if sweep else []
        _robustness(metrics, metrics["wise"], ecfg.baselines, run)
        curves = read_largo_csv(run.logs / "largo.csv")
        if curves:
            metrics["largo"] = largo_summary(run.logs / "largo.csv", s["monitor"].tol)
            plots.largo_curves(curves, run.plots / "largo_gamma_dw.png")
        if "corruptions" in metrics:
            plots.severity_curves(
                metrics["corruptions"], run.plots / "severity.png", metrics["id_accuracy"]
            )
        return metrics

    def needs_adapter(self, cfg: dict) -> bool:
        return True  # every method saves its weights, the linear probe and full included

    def evaluate(self, cfg: dict, run: RunFolder, suite_name: str) -> dict:
        ecfg = dataclass_from(EvalConfig, cfg["eval"], "eval (--set)")
        desc = resolve_data(cfg["data"])
        built = build_model(cfg, desc, ecfg.batch_size)
        base = self.quantized_base(cfg, run)
        pretrained = None if base.enabled else copy.deepcopy(built.model)
        base.restore(built.model)  # a quantized run's codes (a no-op otherwise)
        method = load_weights(built.model, run.adapter)
        parts, suite = parts_for(suite_name, make_suite(desc, built.image_size, ecfg))
        metrics = {"method": method, "suite": suite_name, **evaluate_model(built.model, suite, parts)}
        if suite_name in ("all", "wise") and ecfg.wise_alphas and pretrained is not None:
            metrics["wise"] = wise_sweep(pretrained, built.model, suite, ecfg.wise_alphas)
            if suite_name == "all":
                base = baseline_points(ecfg.baselines)
                line = fit_line([(i, o) for _, i, o in base])
                if "ood_accuracy" in metrics:
                    metrics["effective_robustness"] = effective_robustness(
                        line, metrics["id_accuracy"], metrics["ood_accuracy"]
                    )
        return metrics

    def old_eval(self, run: RunFolder, metrics: dict, suite: str) -> None:
        write_json(run.path / f"eval_{suite}.json", metrics)  # the old name, one release


PIPELINE = OODPipeline()


def _check(cfg: dict) -> tuple:
    """The typed sections ``(trainer, adapter, optim, eval)``, every section validated
    before any data is generated or folder made."""
    s = PIPELINE.check(cfg)
    return s["trainer"], s["adapter"], s["optim"], s["eval"]


def train(cfg: dict, out: Path, callbacks: list | None = None) -> dict:
    """Fine-tune with ``adapter.method`` and evaluate; returns the metrics written to metrics.json.

    Re-running the same command after a crash resumes from ``checkpoints/last.ckpt`` and
    ends where an uninterrupted run ends (``resumed_from_step`` records where it picked up).
    """
    return run_training(PIPELINE, cfg, out, callbacks)


def adapted_model(run: Path) -> torch.nn.Module:
    """The run's classifier with its adapter loaded (base rebuilt from ``config.yaml``):
    where ``lorakit squeeze`` reads an adapter that needs its base."""
    folder = RunFolder(run)
    cfg = folder.read_config()
    built = build_model(cfg, resolve_data(cfg["data"]))
    PIPELINE.quantized_base(cfg, folder).restore(built.model)
    load_weights(built.model, folder.adapter)
    return built.model


def evaluate(run: Path, overrides: dict) -> dict:
    """Recompute the metrics of a finished run from ``run/adapter`` (``suite`` picks a part:
    all, id, ood, corruptions, wise, one OOD set, a corruption or a family; ``data.*`` keys
    point the evaluation at other data, e.g. a validation draw of the shift task)."""
    return run_eval(PIPELINE, run, overrides)
