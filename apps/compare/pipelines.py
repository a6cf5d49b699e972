"""What ``lorakit compare`` needs to know about each pipeline.

Per pipeline: where its config names the method and the learning rate, its headline test
metric (and whether higher is better), which methods it can host, and its VALIDATION
split: the evaluation overrides that point a finished run at data that is neither trained
on nor the test split. The learning rate is chosen on those validation numbers only.

    clip  generated data: a fresh draw of the same generator (another seed); own data:
          an ImageFolder root with a val/ folder beside train/ and test/
    ood   generated shift task: a fresh draw (another seed) of ID test and OOD sets
    cod   generated scenes: a fresh set of scenes (another seed)
    asr   the corpus's own val split (the pipeline's early-stopping split)

Method configs: each method gets its registry defaults (``lorakit methods``) for its own
hyperparameters (r, alpha, dropout, VeRA's d_initial, ...); only what places the adapter
(CLIP towers/modules, OOD targets/head, SAM decoder/fusion, Whisper targets) comes from the
config. ``--method-set`` changes a method's size; ``trainable parameters`` reports it.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorakit.apps.pipelines import PIPELINES as REGISTRY
from lorakit.core.methods import METHODS

VAL_SEED_OFFSET = 104729  # a generator seed no example config uses for train or test

# fields of every method config that place the adapter rather than size it
PLACEMENT = {"targets", "slices", "fused", "modules_to_save", "rank_pattern", "alpha_pattern"}


def method_defaults(name: str) -> dict:
    """The registry defaults of method ``name``'s own hyperparameters (r, alpha, ...)."""
    out = {}
    for f in dataclasses.fields(METHODS[name][0]):
        if f.name in PLACEMENT:
            continue
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    module: str
    section: str  # the config section holding the method
    method_key: str  # the method's name inside that section
    keep: tuple[str, ...]  # keys of the section that place the adapter (kept from the config)
    lr_key: str
    metric: str
    higher_is_better: bool
    extra: tuple[str, ...]  # further test metrics reported beside the headline
    hyper_key: str | None  # sub-dict for the other method fields (OOD's ``hyper``)
    fixed: tuple[str, ...]  # method fields the section has as its own keys; () = all
    # (base config, data folder, dry) -> evaluate overrides scoring a run on validation data;
    # dry: only check that there is a validation split (nothing written)
    validation: Callable[[dict, Path, bool], dict]
    hosts: Callable[[str], str | None]  # None when the pipeline can host the method
    check: Callable[[dict], None]  # the pipeline's own config checks (write nothing)
    steps_key: str = "trainer.max_steps"
    seed_key: str = "trainer.seed"

    def load(self):
        return importlib.import_module(self.module)

    def method_section(self, section: dict, name: str) -> dict:
        """The config section for method ``name``: placement keys from ``section``, the
        method's registry defaults for everything else."""
        out = {k: copy.deepcopy(v) for k, v in section.items() if k in self.keep}
        out[self.method_key] = name
        hyper = method_defaults(name)
        if not self.fixed:
            return out | hyper
        # the section has only ``fixed`` method fields as keys; the rest go under hyper_key
        # (OOD's ``hyper``) or, with no such key (SAM's AdapterSpec), keep their defaults
        out |= {k: hyper.pop(k) for k in self.fixed if k in hyper}
        if self.hyper_key:
            out[self.hyper_key] = hyper
        return out


# --------------------------------------------------------------------------- validation


def _clip_validation(cfg: dict, data_dir: Path, dry: bool) -> dict:
    data = cfg["data"]
    if data.get("generate"):
        gen = dict(data["generate"])
        gen["seed"] = int(gen.get("seed") or 0) + VAL_SEED_OFFSET
        return {"data.root": str(data_dir / "clip_val"), "data.generate": gen, "data.heldout": None}
    root = Path(data.get("root") or "")
    if data.get("root") and (root / "val").is_dir():
        tree = data_dir / "clip_val"
        if dry:
            return {}  # train/ for the class list, the val images as test/
        tree.mkdir(parents=True, exist_ok=True)
        for part, src in (("train", root / "train"), ("test", root / "val")):
            if not (tree / part).exists():
                os.symlink(src.resolve(), tree / part)
        return {"data.root": str(tree), "data.generate": None, "data.heldout": None}
    raise ValueError(
        "compare clip needs a validation split: data.generate (a fresh draw is the validation "
        "set) or data.root with a val/ folder beside train/ and test/"
    )


def _ood_validation(cfg: dict, data_dir: Path, dry: bool) -> dict:
    data = cfg["data"]
    if data.get("kind", "shift") != "shift":
        raise ValueError(
            "compare ood needs data.kind: shift (a fresh draw of the shift task is the "
            "validation split); folders data has no validation split"
        )
    shift = dict(data.get("shift") or {})
    shift["seed"] = int(shift.get("seed") or 0) + VAL_SEED_OFFSET
    return {
        "data.root": str(data_dir / "ood_val"),
        "data.shift": shift,
        "suite": "ood",
        "corruptions": [],
        "wise_alphas": [],
    }


def _cod_validation(cfg: dict, data_dir: Path, dry: bool) -> dict:
    from lorakit.data.camouflage import CamouflageSpec, ensure_cod

    d = cfg["data"]
    if d.get("train") or d.get("test"):
        raise ValueError(
            "compare cod needs generated scenes (data.train and data.test empty): own COD "
            "folders have no validation split"
        )
    if dry:
        return {}
    seed = int(d["seed"]) + VAL_SEED_OFFSET
    spec = CamouflageSpec(n=int(d["n_test"]), size=int(d["size"]), difficulty=float(d["difficulty"]), seed=seed)
    root = ensure_cod(data_dir / f"cod_val-seed{seed}", spec)
    return {"data.test": {"val": str(root)}, "eval.zero_shot": False, "eval.progress": False}


def _asr_validation(cfg: dict, data_dir: Path, dry: bool) -> dict:
    from lorakit.speech.whisper.pipeline import resolve_data

    data = cfg.get("data") or {}
    if dry:  # a generated corpus has a val split; given manifests need data.val
        if data.get("train") and data.get("test") and not data.get("val"):
            raise ValueError("compare asr needs a validation split: set data.val (a manifest)")
        return {}
    val = resolve_data(cfg)["val"]
    if val is None:
        raise ValueError("compare asr needs a validation split: set data.val (a manifest)")
    return {"data.test": str(val), "eval.sets": ["test"], "eval.baseline": False}


# --------------------------------------------------------------------------- hosting


def _core_hosts(name: str) -> str | None:
    from lorakit.data.runtime import check_method_supported

    try:
        check_method_supported(name)
    except ValueError as e:
        return str(e)
    return None


def _cod_hosts(name: str) -> str | None:
    if name not in ("fora", "lora"):
        return "the cod pipeline's SAM adapter hosts fora and lora only (adapter.method)"
    return None


def _check(name: str) -> Callable[[dict], None]:
    """The pipeline's own config checks (``Pipeline.check``: every section, the method
    against the registry), writing nothing."""

    def check(cfg: dict) -> None:
        importlib.import_module(REGISTRY[name].module).PIPELINE.check(copy.deepcopy(cfg))

    return check


PIPELINES: dict[str, PipelineSpec] = {
    "clip": PipelineSpec(
        "clip", REGISTRY["clip"].module, "adapter", "method", ("towers", "modules"),
        "optim.lr", "accuracy", True, ("zero_shot_accuracy",), None, (),
        _clip_validation, _core_hosts, _check("clip"),
    ),
    "ood": PipelineSpec(
        "ood", REGISTRY["ood"].module, "adapter", "method",
        ("targets", "slices", "train_head"), "optim.lr", "ood_accuracy", True,
        ("id_accuracy",), "hyper", ("r", "alpha", "dropout"), _ood_validation, _core_hosts,
        _check("ood"),
    ),
    "cod": PipelineSpec(
        "cod", REGISTRY["cod"].module, "adapter", "method",
        ("decoder", "fusion", "fusion_scales"), "optim.lr", "s_measure", True, ("mae",),
        None, ("r", "alpha", "dropout", "n_bands"), _cod_validation, _cod_hosts,
        _check("cod"),
    ),
    "asr": PipelineSpec(
        "asr", REGISTRY["asr"].module, "adapter", "method", ("targets",),
        "optim.lr", "wer", False, ("cer",), None, (), _asr_validation, _core_hosts,
        _check("asr"),
    ),
}
