"""COD evaluation: prompted prediction over a folder, the pysodmetrics scores, overlays.

Metrics (the COD benchmark set, computed by pysodmetrics on 0-255 maps at the ground
truth's resolution): ``s_measure``, ``e_measure_mean``, ``e_measure_max``,
``weighted_f``, ``mae``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import py_sod_metrics as sod
import torch
from tqdm import tqdm

from lorakit.data.cod import CODFolder, CODSample
from lorakit.data.plots import save_figure

from .dataset import eval_inputs
from .model import SamCOD
from .prompts import PromptOptions


class SODScores:
    """Accumulates pysodmetrics over (prediction, ground truth) pairs."""

    def __init__(self):
        self.sm, self.em, self.wf, self.mae = (
            sod.Smeasure(),
            sod.Emeasure(),
            sod.WeightedFmeasure(),
            sod.MAE(),
        )
        self.count = 0

    def add(self, prob: np.ndarray, gt: np.ndarray) -> None:
        """prob (H, W) in [0, 1]; gt (H, W) bool, same size."""
        if prob.shape != gt.shape:
            raise ValueError(f"prediction {prob.shape} and ground truth {gt.shape} differ in size")
        pred = np.clip(prob * 255, 0, 255).round().astype(np.uint8)
        gt8 = gt.astype(np.uint8) * 255
        for m in (self.sm, self.em, self.wf, self.mae):
            m.step(pred=pred, gt=gt8)
        self.count += 1

    def results(self) -> dict[str, float]:
        if not self.count:
            raise ValueError("no predictions were scored")
        curve = self.em.get_results()["em"]["curve"]
        return {
            "s_measure": float(self.sm.get_results()["sm"]),
            "e_measure_mean": float(np.mean(curve)),
            "e_measure_max": float(np.max(curve)),
            "weighted_f": float(self.wf.get_results()["wfm"]),
            "mae": float(self.mae.get_results()["mae"]),
            "images": self.count,
        }


@torch.no_grad()
def predict_folder(
    model: SamCOD,
    folder: CODFolder,
    opts: PromptOptions,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
) -> Iterator[tuple[CODSample, np.ndarray]]:
    """Yield (sample, probability map (H, W) at the image's own size) for every image."""
    model.eval()
    device = next(model.parameters()).device
    bar = tqdm(
        total=len(folder), desc=f"predict {folder.root.name}", disable=not progress, leave=False
    )
    for start in range(0, len(folder), batch_size):
        items = [
            eval_inputs(folder, i, opts, model.size, seed)
            for i in range(start, min(start + batch_size, len(folder)))
        ]
        images = torch.stack([it[1] for it in items]).to(device)
        logits, _ = model(images, [it[2] for it in items])
        probs = logits[:, 0].sigmoid().float().cpu().numpy()
        for (sample, _, _), prob in zip(items, probs, strict=True):
            h, w = sample.image.shape[:2]
            yield sample, cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        bar.update(len(items))
    bar.close()


def evaluate_folder(
    model: SamCOD,
    folder: CODFolder,
    opts: PromptOptions,
    seed: int = 0,
    keep: int = 6,
    progress: bool = False,
) -> tuple[dict, list]:
    """Scores for one COD folder and the first ``keep`` (sample, prob) pairs for pictures."""
    scores, kept = SODScores(), []
    for sample, prob in predict_folder(model, folder, opts, seed, progress=progress):
        if sample.gt is None:
            raise ValueError(
                f"ground truth {folder.root / 'GT' / (sample.name + '.png')} is missing"
            )
        scores.add(prob, sample.gt)
        if len(kept) < keep:
            kept.append((sample, prob))
    return scores.results(), kept


def overlay(
    image: np.ndarray, mask: np.ndarray, color=(255, 64, 32), alpha: float = 0.5
) -> np.ndarray:
    """Tint ``image`` (H, W, 3) uint8 where ``mask`` (H, W, bool or [0, 1]) is on; outline it."""
    m = mask.astype(np.float32)[..., None]
    out = image.astype(np.float32) * (1 - alpha * m) + np.asarray(color, np.float32) * alpha * m
    out = out.clip(0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(
        (mask > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    cv2.drawContours(out, contours, -1, color, 1)
    return out


def overlay_grid(
    pairs: list[tuple[CODSample, np.ndarray]], png: str | Path, title: str = ""
) -> Path:
    """Rows of image / ground truth / prediction overlays, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(pairs))
    fig, axes = plt.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for r, (sample, prob) in enumerate(pairs):
        gt = sample.gt if sample.gt is not None else np.zeros(prob.shape, bool)
        panels = [
            sample.image,
            overlay(sample.image, gt, (32, 220, 64)),
            overlay(sample.image, prob > 0.5),
        ]
        for c, (ax, img) in enumerate(zip(axes[r], panels, strict=True)):
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(("image", "ground truth", "prediction")[c])
        axes[r][0].set_ylabel(sample.name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, png, dpi=100)
