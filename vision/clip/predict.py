"""Classify images with a trained CLIP run: the adapted and the zero-shot model's top-k.

run = load_run("runs/clip")
adapted, zero_shot = classify(run, PIL.Image.open("x.png"))   # {class: probability}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from lorakit.data.fewshot import load_image
from lorakit.data.runs import RunFolder

from .datasets import Normalize, preprocess
from .evaluate import adapters_off
from .pipeline import (
    PIPELINE,
    build_classifier,
    load_data,
    load_trained,
    sections_adapter,
    zero_shot_model,
)


@dataclass
class ClipRun:
    """A loaded run: the classifier (adapter injected, eval mode) and its preprocessing."""

    model: object  # ClipClassifier
    backbone: object  # build.Backbone (mean, std, image_size)
    classnames: list[str]
    method: str
    zero_shot: object = None  # the rebuilt pretrained classifier when weights were replaced


def load_run(folder: str | Path) -> ClipRun:
    """Rebuild the backbone from ``config.yaml`` and load ``adapter/``."""
    folder = Path(folder)
    cfg = RunFolder(folder).read_config()
    if not (folder / "adapter" / "adapter_config.json").is_file():
        raise ValueError(
            f"{folder} has no trained adapter (adapter/adapter_config.json is missing)"
        )
    classnames = load_data(cfg["data"]).train.classnames
    model, bb = build_classifier(cfg, classnames)
    PIPELINE.quantized_base(cfg, folder).restore(model.clip)  # a quantized run's codes
    load_trained(model.clip, folder / "adapter")  # an adapter, or replaced layers
    base = zero_shot_model(cfg, classnames, sections_adapter(cfg))  # None: adapters switch off
    return ClipRun(model.eval(), bb, classnames, str(cfg["adapter"].get("method", "lora")), base)


@torch.no_grad()
def classify(run: ClipRun, image: Image.Image) -> tuple[dict, dict]:
    """RGB image -> (adapted, zero-shot) ``{class: probability}`` over the run's classes."""
    x = Normalize(run.backbone.mean, run.backbone.std)(
        preprocess(image, run.backbone.image_size)[None]
    )
    adapted = run.model(x).softmax(-1)[0]
    if run.zero_shot is not None:
        zero = run.zero_shot(x).softmax(-1)[0]
    else:
        with adapters_off(run.model):
            zero = run.model(x).softmax(-1)[0]
    return (
        {c: float(p) for c, p in zip(run.classnames, adapted, strict=True)},
        {c: float(p) for c, p in zip(run.classnames, zero, strict=True)},
    )


def top_k(probs: dict, k: int) -> dict[str, float]:
    """``{class: probability}`` of the ``k`` most likely classes, best first."""
    return {c: round(p, 4) for c, p in sorted(probs.items(), key=lambda t: -t[1])[:k]}


def predict_file(run: str | Path, image: str | Path, k: int = 3) -> dict:
    """Top-``k`` classes of one image file for the adapted and the zero-shot model."""
    path = Path(image)
    if not path.is_file():
        raise ValueError(f"image {path} does not exist")
    loaded = load_run(run)
    adapted, zero = classify(loaded, load_image(path))
    return {
        "image": str(path),
        "method": loaded.method,
        "adapted": top_k(adapted, k),
        "zero_shot": top_k(zero, k),
    }
