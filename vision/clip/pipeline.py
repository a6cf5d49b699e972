"""``lorakit train clip`` / ``lorakit eval clip``: few-shot CLIP adaptation end to end.

    lorakit train clip --config demos/clip.yaml --out runs/clip
    lorakit eval clip --run runs/clip

A run folder gets ``config.yaml`` (resolved), ``metrics.json`` (``accuracy``,
``zero_shot_accuracy``, base/novel/harmonic when ``data.base_novel``, held-out zero-shot
retention when ``data.heldout``), ``per_class.csv``, ``adapter/``, ``plots/`` and logs.

``adapter.method: sltrain_full`` (with ``modules: [mlp]``) replaces the towers' MLP Linears
by SLTrain layers instead of injecting an adapter (``lorakit.data.runtime.replaced``):
``adapter/`` then holds those layers, the zero-shot numbers come from the pretrained model
rebuilt from the config, and ``merged_model`` densifies them.
"""

from __future__ import annotations

import contextlib
import copy
import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lorakit.core import (
    SLTrainWeightsConfig,
    densify,
    load_adapter,
    remove_adapter,
    save_adapter,
    trainable_parameters,
)
from lorakit.data import fewshot
from lorakit.data.runs import RunFolder, dataclass_from, write_json
from lorakit.data.runtime.pipeline import (
    Fit,
    Pipeline,
    run_eval,
    run_training,
    set_threads,  # noqa: F401  (an old name)
)
from lorakit.data.runtime.quantized import Calibration
from lorakit.data.runtime.replaced import load_replaced, read_method, replace, save_replaced
from lorakit.data.weight_methods import is_replacement

from . import config
from .build import BackboneConfig, load_backbone
from .classifier import ClipClassifier
from .config import DATA_KEYS, DEFAULTS, check  # noqa: F401  (DEFAULTS: the old import path)
from .datasets import Normalize, StepBatches, load_all
from .evaluate import adapters_off, evaluate_split, harmonic_mean
from .plots import per_class_plot, spectrum_plot
from .prompts import resolve_templates
from .train import FewShotModule, adapter_config, vision_grid


@dataclass
class FewShotData:
    """The resolved data of a run: few-shot train items, test split, class lists."""

    train: fewshot.Split  # K-shot, labels 0..C_train-1 (base classes when base_novel)
    test: fewshot.Split  # the classes trained on
    novel_test: fewshot.Split | None
    heldout_test: fewshot.Split | None


# --------------------------------------------------------------------------- data


def _read_tree(section: dict, where: str) -> dict[str, fewshot.Split]:
    if section.get("split_file"):
        return fewshot.read_coop_split(section["split_file"], section.get("image_root"))
    root = section.get("root")
    if not root:
        raise ValueError(
            f"{where}: set root (an ImageFolder with train/ and test/), split_file, or generate"
        )
    train = fewshot.read_image_folder(Path(root) / "train")
    return {
        "train": train,
        "test": fewshot.read_image_folder(Path(root) / "test", train.classnames),
    }


def data_roots(data: dict, out: Path) -> dict:
    """The data section with the ``root`` of every generated dataset filled in (default
    folders under ``out``), so ``config.yaml`` points at real folders; generates nothing."""
    data = copy.deepcopy(data)
    unknown = sorted(set(data) - set(DATA_KEYS))
    if unknown:
        raise ValueError(f"data: unknown key(s) {unknown}; valid: {list(DATA_KEYS)}")
    for section, default in ((data, out / "data"), (data.get("heldout"), out / "heldout")):
        if section and section.get("generate"):
            section["root"] = str(section.get("root") or default)
    return data


def resolve_data(data: dict, out: Path) -> dict:
    """``data_roots``, then generate the datasets the config names (cached by spec)."""
    data = data_roots(data, out)
    for section in (data, data.get("heldout")):
        if section and section.get("generate"):
            fewshot.generate_shapes_dataset(section["root"], section["generate"])
    return data


def load_data(data: dict) -> FewShotData:
    splits = _read_tree(data, "data")
    train, test = splits["train"], splits["test"]
    n = len(train.classnames)
    labels = list(range(n))
    novel_test = None
    if data.get("base_novel"):
        if n < 2:
            raise ValueError("data.base_novel needs at least 2 classes")
        labels, novel = fewshot.base_novel_labels(n)
        novel_test = fewshot.subset(test, novel)
        test = fewshot.subset(test, labels)
    kshot = fewshot.sample_k_shot(train, int(data["shots"]), int(data["seed"]), labels)
    heldout = None
    if data.get("heldout"):
        heldout = _read_tree(data["heldout"], "data.heldout")["test"]
    return FewShotData(fewshot.subset(kshot, labels), test, novel_test, heldout)


# --------------------------------------------------------------------------- model


def build_classifier(cfg: dict, classnames: list[str]) -> tuple[ClipClassifier, object]:
    """Backbone + zero-shot head over ``classnames``; returns ``(classifier, backbone)``.

    Seeds torch with ``trainer.seed`` first, so a randomly initialised (tiny) backbone and
    the adapter init are the same in training, in a resumed run and in ``evaluate``.
    """
    torch.manual_seed(int((cfg.get("trainer") or {}).get("seed") or 0))
    bb = load_backbone(dataclass_from(BackboneConfig, dict(cfg["backbone"]), "backbone"))
    head = dict(cfg["head"])
    unknown = sorted(set(head) - {"templates", "logit_scale"})
    if unknown:
        raise ValueError(f"head: unknown key(s) {unknown}; valid: ['logit_scale', 'templates']")
    model = ClipClassifier(
        bb.model,
        bb.tokenizer,
        classnames,
        resolve_templates(head["templates"]),
        head.get("logit_scale"),
    )
    return model, bb


def compute_metrics(
    model: ClipClassifier, bb, data: FewShotData, cfg: dict, base: ClipClassifier | None = None
) -> tuple[dict, dict]:
    """Adapted and zero-shot accuracies; returns ``(metrics, per-class table)``. ``base``: the
    zero-shot model when ``model``'s weights were replaced (nothing to switch off); else
    ``model`` with its adapters off."""
    norm, size = Normalize(bb.mean, bb.std), bb.image_size
    zero_shot = (lambda m: contextlib.nullcontext(base)) if base is not None else adapters_off
    kw = {"batch_size": int(cfg["eval"]["batch_size"]), "workers": int(cfg["data"]["workers"])}
    adapted = evaluate_split(model, data.test, size, norm, **kw)
    with zero_shot(model) as zs_model:
        zs = evaluate_split(zs_model, data.test, size, norm, **kw)
    m = {
        "accuracy": adapted.accuracy,
        "zero_shot_accuracy": zs.accuracy,
        "chance": 1 / len(data.test.classnames),
        "n_test": adapted.n,
    }
    if data.novel_test is not None:
        novel = evaluate_split(model, data.novel_test, size, norm, **kw).accuracy
        with zero_shot(model) as zs_model:
            zs_novel = evaluate_split(zs_model, data.novel_test, size, norm, **kw).accuracy
        m |= {
            "base_accuracy": adapted.accuracy,
            "novel_accuracy": novel,
            "harmonic_mean": harmonic_mean(adapted.accuracy, novel),
            "zero_shot_novel_accuracy": zs_novel,
            "zero_shot_harmonic_mean": harmonic_mean(zs.accuracy, zs_novel),
        }
    if data.heldout_test is not None:
        after = evaluate_split(model, data.heldout_test, size, norm, **kw).accuracy
        with zero_shot(model) as zs_model:
            before = evaluate_split(zs_model, data.heldout_test, size, norm, **kw).accuracy
        m |= {
            "heldout_zero_shot_before": before,
            "heldout_zero_shot_after": after,
            "zero_shot_retention": after / before if before > 0 else None,
        }
    table = {c: (zs.per_class[c], adapted.per_class[c]) for c in adapted.per_class}
    return m, table


def write_outputs(
    run: RunFolder, model: ClipClassifier, metrics: dict, table: dict, suffix: str = ""
) -> None:
    """``metrics{suffix}.json``, ``per_class{suffix}.csv`` and the plots."""
    with (run.path / f"per_class{suffix}.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "zero_shot_accuracy", "accuracy"])
        w.writerows([c, f"{z:.4f}", f"{a:.4f}"] for c, (z, a) in table.items())
    per_class_plot(
        {c: a for c, (_, a) in table.items()},
        {c: z for c, (z, _) in table.items()},
        run.plots / "per_class_accuracy.png",
    )
    spectrum_plot(model.clip, run.plots / "comp_lora_spectrum.png")
    write_json(run.path / f"metrics{suffix}.json", metrics)


def load_trained(clip: torch.nn.Module, folder: Path) -> None:
    """Load a run's ``adapter/`` into a freshly built CLIP: replaced layers (``sltrain_full``)
    or an adapter."""
    if is_replacement(read_method(folder)):
        load_replaced(clip, folder)
    else:
        load_adapter(clip, folder)


def sections_adapter(cfg: dict):
    """The run's adapter section as a core config (an adapter's, or a replacement's); FoRA's
    grid from the backbone's image tower when the section sets none."""
    grid = vision_grid(cfg["backbone"]["name"]) if cfg["adapter"].get("method") == "fora" else None
    return adapter_config(cfg["adapter"], grid)


def zero_shot_model(cfg: dict, classnames: list[str], acfg) -> ClipClassifier | None:
    """The pretrained classifier, rebuilt from the config (seeded as in training), when
    ``acfg`` replaced weights (the zero-shot model is gone from the trained one); else None
    (the adapters are switched off instead)."""
    if not isinstance(acfg, SLTrainWeightsConfig):
        return None
    return build_classifier(cfg, classnames)[0].eval()


# --------------------------------------------------------------------------- entry points


class ClipPipeline(Pipeline):
    """Few-shot CLIP: the hooks of the shared run (``lorakit.data.runtime.pipeline``)."""

    name, config = "clip", config

    def check(self, cfg: dict) -> dict:
        sections = super().check(cfg)
        sections["adapter"] = sections_adapter(cfg)
        return sections

    def resolve(self, cfg: dict, out: Path, sections: dict) -> dict:
        cfg = copy.deepcopy(cfg)
        opts = sections["trainer"]
        if opts.max_steps is None:
            opts.max_steps = 500 * int(cfg["data"]["shots"])
        cfg["data"] = data_roots(cfg["data"], out)
        cfg["trainer"] = asdict(opts)
        return cfg

    def data(self, cfg: dict, run: RunFolder, sections: dict) -> FewShotData:
        resolve_data(cfg["data"], run.path)
        return load_data(cfg["data"])

    def build(self, cfg: dict, run: RunFolder, sections: dict, data: FewShotData) -> Fit:
        opts, optim, acfg = sections["trainer"], sections["optim"], sections["adapter"]
        model, bb = build_classifier(cfg, data.train.classnames)
        loaded: list[StepBatches] = []

        def train_batches(early: bool = False) -> StepBatches:
            """The decoded training split, built once. Loading draws from the global RNG
            (the DataLoader's seed), so it runs after the adapter's init as it always did;
            LQ-LoRA's Fisher (``fisher: true``) needs it earlier, inside ``inject``, where
            the draw is undone (``fork_rng``) so the other layers' init is unchanged."""
            if not loaded:
                if early:
                    with torch.random.fork_rng():
                        return train_batches()
                images, labels = load_all(data.train, bb.image_size, int(cfg["data"]["workers"]))
                loaded.append(StepBatches(
                    images, labels, optim.batch_size, opts.max_steps * opts.accumulate,
                    opts.seed, Normalize(bb.mean, bb.std),
                ))  # fmt: skip
            return loaded[0]

        calibration = Calibration(  # the run's own batches (LQ-LoRA's fisher: true)
            lambda step: train_batches(early=True).batch(step, shard=False),
            lambda b: F.cross_entropy(model(b[0]).float(), b[1]),
        )
        if isinstance(acfg, SLTrainWeightsConfig):  # sltrain_full: the MLP weights replaced
            layers = replace(model.clip, acfg)
        else:  # quantized first (backbone.quantize)
            layers = sections["base"].inject(model.clip, acfg, calibration=calibration).layers
        batches = train_batches()
        model.train()  # adapter dropout on (open_clip builds in eval mode)
        return Fit(
            method=cfg["adapter"].get("method", "lora"),
            module=FewShotModule(model, batches, optim, opts.max_steps, opts.seed),
            sampler=batches,
            trainable_parameters=trainable_parameters(model.clip).numel,
            adapted_layers=len(layers),
            state={"model": model, "bb": bb, "data": data, "adapter": acfg},
        )

    def save(self, fit: Fit, run: RunFolder) -> None:
        fit.state["model"].eval()
        acfg = fit.state["adapter"]
        if isinstance(acfg, SLTrainWeightsConfig):
            save_replaced(fit.state["model"].clip, acfg, run.adapter, fit.method)
        else:
            save_adapter(fit.state["model"].clip, run.adapter)

    def metrics(self, cfg: dict, run: RunFolder, fit: Fit, sections: dict) -> dict:
        s = fit.state
        base = zero_shot_model(cfg, s["data"].train.classnames, s["adapter"])
        s["metrics"], s["table"] = compute_metrics(s["model"], s["bb"], s["data"], cfg, base)
        return {**s["metrics"], "shots": int(cfg["data"]["shots"])}

    def outputs(self, run: RunFolder, fit: Fit, metrics: dict) -> None:
        write_outputs(run, fit.state["model"], metrics, fit.state["table"])

    def evaluate(self, cfg: dict, run: RunFolder, suite: str) -> dict:
        cfg["data"] = resolve_data(cfg["data"], run.path)
        data = load_data(cfg["data"])
        model, bb = build_classifier(cfg, data.train.classnames)
        self.quantized_base(cfg, run).restore(model.clip)
        load_trained(model.clip, run.adapter)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device)
        base = zero_shot_model(cfg, data.train.classnames, sections_adapter(cfg))
        metrics, table = compute_metrics(model, bb, data, cfg, base and base.to(device))
        write_outputs(run, model, metrics, table, suffix="_eval")  # metrics_eval.json: old name
        return metrics


PIPELINE = ClipPipeline()


def train(cfg: dict, out: Path, callbacks: list | None = None) -> dict:
    """Train an adapter as ``cfg`` says, write the run folder ``out``; return the metrics."""
    return run_training(PIPELINE, cfg, out, callbacks)


def adapted_model(run: Path) -> torch.nn.Module:
    """The module the run's adapter is loaded into (its CLIP model, base rebuilt from
    ``config.yaml``): where ``lorakit squeeze`` reads an adapter that needs its base."""
    folder = RunFolder(run)
    cfg = folder.read_config()
    model, _ = build_classifier(cfg, load_data(cfg["data"]).train.classnames)
    PIPELINE.quantized_base(cfg, folder).restore(model.clip)
    load_trained(model.clip, folder.adapter)
    return model.clip


def merged_model(run: Path) -> torch.nn.Module:
    """The run's CLIP model with its update folded into plain weights (export): a
    replacement (``sltrain_full``) densified to ``nn.Linear`` layers with ``W = s B A + S``,
    an adapter merged and removed."""
    clip = adapted_model(run)
    if not densify(clip):
        remove_adapter(clip, merge_first=True)
    return clip


def evaluate(run: Path, overrides: dict) -> dict:
    """Rebuild the backbone, load ``run/adapter`` and recompute the metrics (written to
    ``run/eval/all.json`` and, for one release, ``run/metrics_eval.json``). ``overrides``
    are dotted config keys (``data.root``)."""
    return run_eval(PIPELINE, run, overrides)
