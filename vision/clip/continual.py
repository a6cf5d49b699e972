"""CLIP's side of the continual protocol (``lorakit.data.continual``): a sequence of
few-shot classification datasets, each with its own classes, plus zero-shot retention on
a held-out dataset (how much of the starting model's zero-shot accuracy survives).

Built-in tasks are generated shapes datasets (``GENERATED``: disjoint class sets, each in
its own rendering style; the ``unseen_*`` ones use only pairs the pretrained stand-in never
saw), so the whole sequence runs offline; a user's own tasks are
ImageFolder trees (``folders: {name: root}`` with ``train/`` and ``test/``) or CoOp splits
(``folders: {name: {split_file, image_root}}``). The K shots per class come from the
training split; the rest of ``train/`` (a CoOp file: its ``val``) is the validation split
the learning rate is chosen on; ``test`` is what the matrix reports.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from lorakit.data import captions, fewshot
from lorakit.data.continual.domain import check_tasks
from lorakit.data.runs import dataclass_from
from lorakit.data.sections import backbone_defaults

from .build import BackboneConfig, load_backbone
from .classifier import ClipClassifier
from .datasets import Normalize, StepBatches, load_all
from .evaluate import evaluate_split
from .prompts import resolve_templates
from .train import adapter_config, vision_grid

GENERATED = {
    "plain": (["red circle", "green square", "blue triangle", "yellow star"], "plain"),
    "sketch": (["purple hexagon", "orange cross", "white diamond", "black ring"], "sketch"),
    "cartoon": (["pink circle", "cyan square", "red triangle", "green star"], "cartoon"),
    "noisy": (["blue hexagon", "yellow cross", "purple diamond", "orange ring"], "noisy"),
    "dark": (["white circle", "black square", "pink triangle", "cyan star"], "dark"),
}
HELDOUT = (["red hexagon", "blue cross", "yellow diamond", "green ring"], "plain")
# Tasks for the pretrained stand-in (clip.backbone.pretrained: lorakit-shapes): classes from
# the colour-shape pairs its pretraining never showed, in styles it never saw; the held-out
# dataset's pairs are all pretraining pairs, so its zero-shot accuracy is what it knows.
_UNSEEN = [captions.classname(p) for p in captions.COMBOS.task + captions.COMBOS.val]
GENERATED |= {
    "unseen_sketch": (_UNSEEN[0:4], "sketch"),
    "unseen_noisy": (_UNSEEN[4:8], "noisy"),
    "unseen_dark": (_UNSEEN[8:12], "dark"),
    "unseen_sketch2": (_UNSEEN[12:16], "sketch"),
}

DEFAULTS = {
    "backbone": backbone_defaults(dataclasses.asdict(BackboneConfig())),
    "folders": {},  # task name -> ImageFolder root (train/, test/) or {split_file, image_root}
    "shots": 8,
    "size": 32,  # generated image side
    "train_per_class": 16,  # generated pool: shots for training, the rest for validation
    "test_per_class": 20,
    "data_seed": 0,
    "heldout": True,  # zero-shot retention on a generated held-out dataset
    "towers": "both",
    "modules": ["q", "k", "v"],
    "templates": "clip",
    "logit_scale": None,
    "eval_batch_size": 128,
}


class TrainableTextClassifier(ClipClassifier):
    """The classifier whose class head is differentiable whenever the text tower trains:
    by an adapter (as ``ClipClassifier``) or by its own weights (full fine-tuning, whose
    text tower would otherwise be encoded once under ``no_grad`` and never learn)."""

    @property
    def text_adapted(self) -> bool:
        return super().text_adapted or any(
            p.requires_grad for n, p in self.clip.named_parameters() if not n.startswith("visual.")
        )


class ClipTasks:
    """The CLIP domain; ``section`` is the config's ``clip:`` part, ``tasks`` the sequence."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, section: dict, tasks: list[str]):
        unknown = sorted(set(section) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"clip: unknown key(s) {unknown}; valid: {sorted(DEFAULTS)}")
        self.cfg = {**DEFAULTS, **section}
        self.backbone = dataclass_from(BackboneConfig, dict(self.cfg["backbone"]), "clip.backbone")
        if (self.backbone.quantize or {}).get("bits") is not None:
            raise ValueError("clip.backbone.quantize: the continual loop trains on a float base "
                             "(a quantized base is the clip, cod, ood and asr pipelines')")
        folders = dict(self.cfg["folders"] or {})
        known = sorted(set(GENERATED) | set(folders))
        tasks = check_tasks(tasks, known)
        if int(self.cfg["shots"]) >= int(self.cfg["train_per_class"]):
            raise ValueError("clip.shots must be below clip.train_per_class (the rest validates)")
        resolve_templates(self.cfg["templates"])
        self.task_names, self.folders = list(tasks), folders
        self.extra_names = ["heldout_zero_shot"] if self.cfg["heldout"] else []
        self.splits: list[dict[str, fewshot.Split]] = []

    # ------------------------------------------------------------------ data
    def _spec(self, classes, style, seed) -> dict:
        c = self.cfg
        return {"classes": classes, "style": style, "size": int(c["size"]), "seed": seed,
                "train_per_class": int(c["train_per_class"]),
                "test_per_class": int(c["test_per_class"])}  # fmt: skip

    def prepare(self, out: Path) -> None:
        """Generate the built-in datasets under ``out/data`` and cut every task's splits."""
        seed = int(self.cfg["data_seed"])
        roots = {}
        for k, name in enumerate(self.task_names):
            if name in self.folders:
                roots[name] = self.folders[name]
            else:
                classes, style = GENERATED[name]
                roots[name] = fewshot.generate_shapes_dataset(
                    out / "data" / name, self._spec(classes, style, seed + k)
                )
        self.splits = [self._split(roots[n]) for n in self.task_names]
        if self.cfg["heldout"]:
            root = fewshot.generate_shapes_dataset(
                out / "data" / "heldout", self._spec(*HELDOUT, seed + 99)
            )
            self.heldout = fewshot.read_image_folder(root / "test")

    def _split(self, root) -> dict[str, fewshot.Split]:
        """K shots of ``train``; validation: a CoOp file's ``val``, else the rest of
        ``train``; ``test``."""
        if isinstance(root, dict):  # {split_file, image_root}: a CoOp split
            parts = fewshot.read_coop_split(root["split_file"], root.get("image_root"))
            shots = fewshot.sample_k_shot(parts["train"], int(self.cfg["shots"]),
                                          int(self.cfg["data_seed"]))  # fmt: skip
            return {"train": shots, "val": parts["val"], "test": parts["test"]}
        root = Path(root)
        train = fewshot.read_image_folder(root / "train")
        test = fewshot.read_image_folder(root / "test", train.classnames)
        shots = fewshot.sample_k_shot(train, int(self.cfg["shots"]), int(self.cfg["data_seed"]))
        used = {p for p, _ in shots.items}
        val = fewshot.Split([it for it in train.items if it[0] not in used], train.classnames)
        if not val.items:
            raise ValueError(f"{root}/train has no images beyond the shots for validation")
        return {"train": shots, "val": val, "test": test}

    # ------------------------------------------------------------------ model
    def build_model(self, seed: int) -> ClipClassifier:
        torch.manual_seed(seed)  # a random (tiny) backbone is the same for every method
        self.bb = load_backbone(self.backbone)
        self.norm = Normalize(self.bb.mean, self.bb.std)
        first = self.splits[0]["train"].classnames
        return TrainableTextClassifier(self.bb.model, self.bb.tokenizer, first,
                              resolve_templates(self.cfg["templates"]), self.cfg["logit_scale"])  # fmt: skip

    def adapter_config(self, method: str, hyper: dict):
        section = {"method": method, "towers": self.cfg["towers"],
                   "modules": self.cfg["modules"], **hyper}  # fmt: skip
        grid = vision_grid(self.backbone.name) if method == "fora" else None
        cfg = adapter_config(section, grid)  # targets are relative to the open_clip model
        extra = {}
        if getattr(cfg, "full_targets", ()):
            extra["full_targets"] = tuple(rf"clip\.{t}" for t in cfg.full_targets)
        return dataclasses.replace(cfg, targets=tuple(rf"clip\.{t}" for t in cfg.targets), **extra)

    def _classes(self, ids) -> list[str]:
        return [c for j in ids for c in self.splits[j]["train"].classnames]

    def set_task(self, model: ClipClassifier, ids) -> None:
        model.set_classes(self._classes(ids), model.templates)

    def batches(self, ids, steps: int, batch_size: int, seed: int):
        xs, ys, offset = [], [], 0
        for j in ids:
            x, y = load_all(self.splits[j]["train"], self.bb.image_size)
            xs.append(x)
            ys.append(y + offset)
            offset += len(self.splits[j]["train"].classnames)
        stream = StepBatches(torch.cat(xs), torch.cat(ys), batch_size, steps, seed, self.norm)
        return stream, stream

    @staticmethod
    def loss(model: ClipClassifier, batch) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(images).float(), labels)

    # ------------------------------------------------------------------ scores
    def _accuracy(self, model, split) -> float:
        with torch.no_grad():
            return evaluate_split(model, split, self.bb.image_size, self.norm,
                                  batch_size=int(self.cfg["eval_batch_size"])).accuracy  # fmt: skip

    def evaluate(self, model, j: int, split: str) -> float:
        return self._accuracy(model, self.splits[j][split])

    def extras(self, model) -> dict[str, float]:
        if not self.cfg["heldout"]:
            return {}
        return {"heldout_zero_shot": self._accuracy(model, self.heldout)}
