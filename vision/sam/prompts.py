"""Weak labels -> SAM prompts and the partial label map the losses read.

Points are sampled from a scribble (``n_fg`` from its 1-pixels, ``n_bg`` from its
2-pixels) or taken from ``points.json``; a box comes from ``boxes.json``. Under box
supervision (``labels: box``, FCL-COD's setting) the box is both the prompt and the only
label: every pixel outside it is background, every pixel inside it unknown. Coordinates
are ``[x, y]`` image pixels; ``resize_prompt`` maps them to the model's square input.
"""

from __future__ import annotations

import cv2
import numpy as np

from lorakit.data.cod import CODSample

from .config import LABEL_SOURCES, PROMPT_MODES, PromptOptions  # noqa: F401  (old names)


def points_from_scribble(
    scribble: np.ndarray, rng: np.random.Generator, n_fg: int, n_bg: int, name: str = ""
) -> np.ndarray:
    """scribble (H, W) in {0, 1, 2} -> (n_fg + n_bg, 3) float array of [x, y, label 1/0].

    Samples with replacement when a scribble has fewer pixels than asked for.
    """
    out = []
    for value, label, n in ((1, 1, n_fg), (2, 0, n_bg)):
        if n == 0:
            continue
        ys, xs = np.nonzero(scribble == value)
        if len(ys) == 0:
            kind = "foreground (1)" if value == 1 else "background (2)"
            raise ValueError(
                f"scribble of image {name or '?'} has no {kind} pixels to sample prompt points from"
            )
        pick = rng.choice(len(ys), size=n, replace=len(ys) < n)
        out.extend([xs[i], ys[i], label] for i in pick)
    return np.asarray(out, np.float32)


def points_from_list(points: list, rng: np.random.Generator, n_fg: int, n_bg: int) -> np.ndarray:
    """Subsample ``points.json`` entries to ``n_fg`` foreground and ``n_bg`` background points."""
    arr = np.asarray(points, np.float32)
    out = []
    for label, n in ((1, n_fg), (0, n_bg)):
        rows = arr[arr[:, 2] == label]
        if len(rows) and n:
            out.append(rows[rng.choice(len(rows), size=n, replace=len(rows) < n)])
    if not out or not (arr[:, 2] == 1).any():
        raise ValueError("points.json entry has no foreground point (label 1)")
    return np.concatenate(out)


def label_map(sample: CODSample, source: str) -> np.ndarray:
    """The partial label map (H, W) uint8 {0, 1, 2} that supervises training."""
    if source == "scribble":
        return sample.scribble
    h, w = sample.image.shape[:2]
    if source == "box":
        return box_label_map(sample.box, (h, w))
    out = np.zeros((h, w), np.uint8)
    radius = max(1, min(h, w) // 40)
    for x, y, lab in sample.points:
        cv2.circle(out, (int(x), int(y)), radius, 1 if lab == 1 else 2, -1)
    return out


def box_label_map(box, hw: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8: 2 (background) outside ``box`` = [x0, y0, x1, y1] (inclusive), 0 inside."""
    out = np.full(hw, 2, np.uint8)
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    out[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = 0
    return out


def sample_points(
    sample: CODSample, labels: np.ndarray, opts: PromptOptions, rng: np.random.Generator
) -> np.ndarray:
    if opts.labels == "box":
        return np.zeros((0, 3), np.float32)
    if opts.labels == "points":
        return points_from_list(sample.points, rng, opts.n_fg, opts.n_bg)
    return points_from_scribble(labels, rng, opts.n_fg, opts.n_bg, sample.name)


def resize_points(points: np.ndarray, hw: tuple[int, int], size: int) -> np.ndarray:
    """[x, y, label] from an (H, W) image to a (size, size) input (pixel centres kept)."""
    out = points.copy()
    out[:, 0] = (points[:, 0] + 0.5) * size / hw[1] - 0.5
    out[:, 1] = (points[:, 1] + 0.5) * size / hw[0] - 0.5
    return out


def resize_box(box, hw: tuple[int, int], size: int) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box)
    sx, sy = size / hw[1], size / hw[0]
    return np.asarray([x0 * sx, y0 * sy, (x1 + 1) * sx - 1, (y1 + 1) * sy - 1], np.float32)
