"""Classify images with a trained robustness run: the fine-tuned model and the pretrained
model it started from, each as ``{class: probability}``.

    run = load_run("runs/ood")
    probs = classify(run.model, prepare(rgb, run.image_size))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lorakit.data.runs import RunFolder

from .methods import load_weights
from .pipeline import PIPELINE, build_model, resolve_data


@dataclass
class OODRun:
    """A loaded run (eval mode); ``method`` is ``base`` for the pretrained model."""

    model: torch.nn.Module
    method: str
    classes: list[str]
    image_size: int
    id_test: str
    metrics: dict


def load_run(folder: str | Path, base: bool = False) -> OODRun:
    """A run's fine-tuned classifier (``base``: the pretrained model it started from)."""
    run = RunFolder(folder)
    cfg = run.read_config()
    desc = resolve_data(cfg["data"])
    built = build_model(cfg, desc)
    PIPELINE.quantized_base(cfg, run).restore(built.model)  # a quantized run's codes
    method = "base" if base else load_weights(built.model, run.adapter)
    return OODRun(
        built.model.eval(),
        method,
        list(desc["classes"]),
        int(built.image_size),
        desc["id_test"],
        run.read_metrics(),
    )


def prepare(image: np.ndarray, size: int, corruption: str | None = None, severity: int = 0):
    """uint8 (H, W, 3) -> the model input (size, size, 3) uint8 (a writable copy),
    corrupted by ``corruption`` at ``severity`` (1-5) unless severity is 0."""
    from lorakit.data.corruptions import CORRUPTIONS, corrupt

    img = np.array(Image.fromarray(np.asarray(image)).resize((size, size), Image.BICUBIC))
    if int(severity) > 0:
        if corruption not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {corruption!r}; valid: {', '.join(CORRUPTIONS)}")
        img = np.array(corrupt(img[None], corruption, int(severity), seed=0)[0])
    return img


@torch.no_grad()
def classify(model: torch.nn.Module, classes: list[str], img: np.ndarray) -> dict[str, float]:
    """A prepared uint8 (size, size, 3) image -> ``{class: probability}``."""
    # a copy: images from PIL are read-only, which torch.from_numpy warns about
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255.0)[None]
    p = model(x).softmax(-1)[0]
    return {c: float(v) for c, v in zip(classes, p, strict=True)}


def predict_file(
    run: str | Path, image: str | Path, k: int = 3, corruption: str | None = None, severity: int = 0
) -> dict:
    """Top-``k`` classes of one image file: the fine-tuned run vs its pretrained base."""
    from lorakit.data.fewshot import load_image

    path = Path(image)
    if not path.is_file():
        raise ValueError(f"image {path} does not exist")
    tuned, base = load_run(run), load_run(run, base=True)
    img = prepare(np.asarray(load_image(path)), tuned.image_size, corruption, severity)

    def top(probs: dict) -> dict[str, float]:
        return {c: round(p, 4) for c, p in sorted(probs.items(), key=lambda t: -t[1])[:k]}

    return {
        "image": str(path),
        "method": tuned.method,
        "adapted": top(classify(tuned.model, tuned.classes, img)),
        "base": top(classify(base.model, base.classes, img)),
    }
