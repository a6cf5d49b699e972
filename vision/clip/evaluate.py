"""Top-1 accuracy of a ``ClipClassifier`` on a split; zero-shot versus adapted numbers.

``evaluate_split`` returns overall and per-class accuracy. ``zero_shot`` runs the same
evaluation with the adapters switched off (the pretrained CLIP), which is how the
zero-shot baseline, base-to-novel and the held-out retention numbers are measured.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from lorakit.core import disable, enable, hosts
from lorakit.data.fewshot import Split

from .classifier import ClipClassifier
from .datasets import Normalize, eval_loader


@dataclass
class SplitResult:
    """Top-1 ``accuracy`` in [0, 1], ``per_class`` accuracy by class name, ``n`` images."""

    accuracy: float
    per_class: dict[str, float]
    n: int


@torch.no_grad()
def predict(
    model: ClipClassifier,
    split: Split,
    size: int,
    normalize: Normalize,
    batch_size: int = 64,
    workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Predicted and true labels ``(N,)`` for every item of ``split``."""
    was_training = model.training
    model.eval()
    device = model.tokens.device
    preds, labels = [], []
    try:
        for x, y in eval_loader(split, size, batch_size, workers):
            preds.append(model(normalize(x.to(device))).argmax(-1).cpu())
            labels.append(y)
    finally:
        model.train(was_training)
    return torch.cat(preds), torch.cat(labels)


def evaluate_split(
    model: ClipClassifier,
    split: Split,
    size: int,
    normalize: Normalize,
    batch_size: int = 64,
    workers: int = 0,
) -> SplitResult:
    """Classify ``split`` among ``split.classnames`` (the head is switched to them)."""
    if not split.items:
        raise ValueError("evaluation split is empty")
    old = (model.classnames, model.templates)
    model.set_classes(split.classnames, model.templates)
    try:
        pred, true = predict(model, split, size, normalize, batch_size, workers)
    finally:
        model.set_classes(*old)
    correct = (pred == true).float()
    per_class = {
        name: float(correct[true == i].mean()) if (true == i).any() else float("nan")
        for i, name in enumerate(split.classnames)
    }
    return SplitResult(float(correct.mean()), per_class, len(true))


@contextmanager
def adapters_off(model: ClipClassifier):
    """Temporarily run the base CLIP (zero-shot); a no-op when nothing is injected."""
    injected = bool(hosts(model.clip))
    if injected:
        disable(model.clip)
    try:
        yield model
    finally:
        if injected:
            enable(model.clip)


def harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0
