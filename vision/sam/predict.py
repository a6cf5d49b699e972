"""Predict one image with a trained run: a probability mask PNG and an overlay PNG.

Prompts: the user's foreground points / box; with none, the whole image as the box
(SAM's "segment the object in this region").
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from lorakit.data.cod import read_rgb
from lorakit.data.runs import RunFolder

from .dataset import to_tensor
from .evaluate import overlay
from .model import Prompt, SamCOD
from .pipeline import load_model
from .prompts import resize_box, resize_points


@torch.no_grad()
def predict_image(model: SamCOD, image: np.ndarray, points=None, box=None) -> np.ndarray:
    """image (H, W, 3) uint8; points [[x, y, label], ...]; box [x0, y0, x1, y1] -> prob (H, W)."""
    h, w = image.shape[:2]
    size = model.size
    if not points and box is None:
        box = [0, 0, w - 1, h - 1]
    pts = (
        torch.from_numpy(resize_points(np.asarray(points, np.float32), (h, w), size))
        if points
        else None
    )
    bx = torch.from_numpy(resize_box(box, (h, w), size)) if box is not None else None
    x = to_tensor(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))[None]
    logits, _ = model.eval()(x, [Prompt(points=pts, box=bx)])
    prob = logits[0, 0].sigmoid().numpy()
    return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)


def predict_file(
    run: str | Path, image: str | Path, out: str | Path, points=None, box=None
) -> dict:
    """Write ``<out>/<stem>_mask.png`` (0-255) and ``<out>/<stem>_overlay.png``."""
    folder = RunFolder(run)
    model = load_model(folder, folder.read_config())
    path = Path(image)
    if not path.is_file():
        raise ValueError(f"image {path} does not exist")
    rgb = read_rgb(path)
    prob = predict_image(model, rgb, points, box)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mask_png, overlay_png = out / f"{path.stem}_mask.png", out / f"{path.stem}_overlay.png"
    Image.fromarray((prob * 255).round().astype(np.uint8)).save(mask_png)
    Image.fromarray(overlay(rgb, prob > 0.5)).save(overlay_png)
    return {
        "mask": str(mask_png),
        "overlay": str(overlay_png),
        "foreground_fraction": float((prob > 0.5).mean()),
    }
