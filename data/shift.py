"""A generated shape-classification task with a controllable distribution shift.

Every image shows one shape (the class) at a random position, size and rotation. The
*style* decides how it is drawn; the in-distribution (ID) style is ``photo``, the OOD
styles draw the same geometry differently:

    photo     filled saturated shape on a smooth coloured gradient, mild sensor noise (ID)
    sketch    dark pencil outline on white paper, grey, jittered strokes
    texture   shape and background filled with stripes / checkers of random colours
    clutter   photo style with distractor blobs and lines on the background
    night     thin neon outline on a dark noisy background
    painting  photo style, colour-quantised, blurred, with brush-stroke noise

``strength`` in [0, 1] controls the shift: the pixel blend ``(1 - s) * photo + s * style``
of the same geometry (0 is the ID distribution itself).

``write_shift_task(root, ...)`` writes ImageFolder trees that share one class list::

    root/task.json                      parameters + classes (reused when they match)
    root/id_train/<class>/00000.png     ID training set
    root/id_test/<class>/...            ID test set
    root/ood/<style>/<class>/...        one OOD set per style
    root/ood/<style>_subset/<alias>/... a subset of the classes under other folder names
    root/ood/<style>_subset/class_map.json   {alias: class}, like ImageNet-R's 200 wnids

``render(...)`` returns the same images as arrays, for in-memory use (pretraining).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .generated import install, remove_stale

SHAPES = ("circle", "square", "triangle", "cross", "star", "diamond", "ring", "hexagon")
STYLES = ("photo", "sketch", "texture", "clutter", "night", "painting")
ID_STYLE = "photo"
SUPERSAMPLE = 4


# ----------------------------------------------------------------------------- geometry


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def ring(n: int, radius: float, offset: float = 0.0):
        return [
            (
                cx + radius * math.cos(rot + offset + 2 * math.pi * k / n),
                cy + radius * math.sin(rot + offset + 2 * math.pi * k / n),
            )
            for k in range(n)
        ]

    if shape == "square":
        return ring(4, r, math.pi / 4)
    if shape == "triangle":
        return ring(3, r * 1.1, -math.pi / 2)
    if shape == "diamond":
        return [(x, cy + (y - cy) * 1.35) for x, y in ring(4, r * 0.85)]
    if shape == "hexagon":
        return ring(6, r)
    if shape == "star":
        outer, inner = ring(5, r * 1.1, -math.pi / 2), ring(5, r * 0.45, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if shape == "cross":
        w = r * 0.38
        arm = [
            (-w, -r),
            (w, -r),
            (w, -w),
            (r, -w),
            (r, w),
            (w, w),
            (w, r),
            (-w, r),
            (-w, w),
            (-r, w),
            (-r, -w),
            (-w, -w),
        ]
        c, s = math.cos(rot), math.sin(rot)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in arm]
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random instance of ``shape``: float mask (size, size) in [0, 1], anti-aliased."""
    big = size * SUPERSAMPLE
    r = big * rng.uniform(0.22, 0.36)
    cx, cy = big / 2 + rng.uniform(-0.12, 0.12, 2) * big
    rot = rng.uniform(0, 2 * math.pi)
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    if shape in ("circle", "ring"):
        box = [cx - r, cy - r, cx + r, cy + r]
        draw.ellipse(box, fill=255)
        if shape == "ring":
            k = r * 0.55
            draw.ellipse([cx - k, cy - k, cx + k, cy + k], fill=0)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, rot), fill=255)
    return np.asarray(img.resize((size, size), Image.BOX), dtype=np.float32) / 255.0


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Morphological gradient of a mask: (H, W) in [0, 1]."""
    m = (mask > 0.5).astype(np.float32)
    pad = np.pad(m, width, mode="edge")
    h, w = m.shape
    shifts = [
        pad[dy : dy + h, dx : dx + w] for dy in range(2 * width + 1) for dx in range(2 * width + 1)
    ]
    return np.clip(np.max(shifts, 0) - np.min(shifts, 0), 0, 1)


# ----------------------------------------------------------------------------- styles


def _colour(rng: np.random.Generator, sat: float = 0.9, val: float = 0.9) -> np.ndarray:
    h = rng.uniform(0, 1)
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    return np.array(
        [(val, t, p), (q, val, p), (p, val, t), (p, q, val), (t, p, val), (val, p, q)][i],
        np.float32,
    )


def _gradient(size: int, rng: np.random.Generator, sat: float, val: float) -> np.ndarray:
    c0, c1 = _colour(rng, sat, val), _colour(rng, sat, val)
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = np.clip((xx * math.cos(a) + yy * math.sin(a) + 1) / 2, 0, 1)[..., None]
    return (1 - t) * c0 + t * c1


def _pattern(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a, period = rng.uniform(0, math.pi), rng.uniform(3, 7) * size / 32
    c0, c1 = _colour(rng, 0.8, 0.95), _colour(rng, 0.6, 0.35)
    if rng.random() < 0.5:
        t = np.sin(2 * math.pi * (xx * math.cos(a) + yy * math.sin(a)) / period) > 0
    else:
        t = ((xx // period + yy // period) % 2) > 0
    return np.where(t[..., None], c0, c1)


def _style_photo(mask, rng, size):
    img = _gradient(size, rng, 0.35, 0.75)
    m = mask[..., None]
    img = (1 - m) * img + m * _colour(rng)
    return img + rng.normal(0, 0.02, img.shape)


def _style_sketch(mask, rng, size):
    edge = outline(mask, max(1, size // 32))
    jitter = rng.uniform(0.6, 1.0, edge.shape) * (rng.random(edge.shape) > 0.15)
    grey = 0.95 - 0.8 * edge * jitter + rng.normal(0, 0.03, edge.shape)
    return np.repeat(grey[..., None], 3, -1)


def _style_texture(mask, rng, size):
    m = mask[..., None]
    return (1 - m) * _pattern(size, rng) + m * _pattern(size, rng)


def _style_clutter(mask, rng, size):
    img = Image.fromarray((np.clip(_style_photo(mask, rng, size), 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    inside = mask > 0.5
    for _ in range(int(rng.integers(3, 7))):
        x, y = rng.uniform(0, size, 2)
        if inside[min(int(y), size - 1), min(int(x), size - 1)]:
            continue
        rad = rng.uniform(0.04, 0.1) * size
        col = tuple(int(v) for v in _colour(rng) * 255)
        if rng.random() < 0.5:
            draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=col)
        else:
            draw.line([x, y, *rng.uniform(0, size, 2)], fill=col, width=max(1, size // 32))
    return np.asarray(img, np.float32) / 255.0


def _style_night(mask, rng, size):
    bg = np.full((size, size, 3), 0.08, np.float32) + rng.normal(0, 0.05, (size, size, 3))
    edge = outline(mask, max(1, size // 48))[..., None]
    return (1 - edge) * bg + edge * _colour(rng, 0.7, 1.0)


def _style_painting(mask, rng, size):
    img = np.clip(_style_photo(mask, rng, size), 0, 1)
    levels = int(rng.integers(3, 5))
    img = np.round(img * levels) / levels
    pil = Image.fromarray((img * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(size / 48))
    img = np.asarray(pil, np.float32) / 255.0
    strokes = np.repeat(rng.normal(0, 0.08, (size, 1, 1)), size, 1)  # horizontal brush marks
    return img + strokes


_STYLES = {
    "photo": _style_photo,
    "sketch": _style_sketch,
    "texture": _style_texture,
    "clutter": _style_clutter,
    "night": _style_night,
    "painting": _style_painting,
}


def render_one(
    shape: str, style: str, size: int, rng: np.random.Generator, strength: float = 1.0
) -> np.ndarray:
    """One image: (size, size, 3) uint8. ``strength`` blends the ID style into ``style``."""
    if style not in _STYLES:
        raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLES)}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"shift strength must be in [0, 1], got {strength}")
    mask = shape_mask(shape, size, rng)
    state = rng.bit_generator.state
    photo = _style_photo(mask, rng, size)
    if style == ID_STYLE or strength == 0.0:
        img = photo
    else:
        rng.bit_generator.state = state  # the OOD rendering shares the ID colours where it can
        img = (1 - strength) * photo + strength * _STYLES[style](mask, rng, size)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render(
    classes: list[str] | tuple[str, ...],
    per_class: int,
    style: str,
    size: int = 32,
    seed: int = 0,
    strength: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each class: ((N, size, size, 3) uint8, (N,) int64 labels)."""
    unknown = [c for c in classes if c not in SHAPES]
    if unknown:
        raise ValueError(f"unknown shape class(es) {unknown}; valid: {', '.join(SHAPES)}")
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(per_class):
        for k, c in enumerate(classes):
            images.append(render_one(c, style, size, rng, strength))
            labels.append(k)
        del i
    return np.stack(images), np.asarray(labels, np.int64)


# ----------------------------------------------------------------------------- folders


@dataclass
class ShiftTask:
    """Parameters of a generated shift task (written to ``task.json``)."""

    classes: list[str] = field(
        default_factory=lambda: ["circle", "square", "triangle", "cross", "star", "ring"]
    )
    size: int = 32
    train_per_class: int = 60
    test_per_class: int = 30
    ood_per_class: int = 30
    ood_styles: list[str] = field(
        default_factory=lambda: ["sketch", "texture", "clutter", "night", "painting"]
    )
    strength: float = 1.0
    subset_style: str | None = "sketch"  # also write <style>_subset with half the classes renamed
    seed: int = 0


def _write_folder(root: Path, names: list[str], images: np.ndarray, labels: np.ndarray) -> None:
    for _k, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
    counters = [0] * len(names)
    for img, y in zip(images, labels, strict=True):
        Image.fromarray(img).save(root / names[y] / f"{counters[y]:05d}.png")
        counters[y] += 1


def write_shift_task(root: str | Path, task: ShiftTask | None = None) -> dict:
    """Write the task's ImageFolder trees under ``root`` (reused when ``task.json`` matches).

    Returns the task description: ``{"classes", "id_train", "id_test", "ood": {name: {"root",
    "class_map"}}}`` with absolute paths.
    """
    task = task or ShiftTask()
    root = Path(root)
    for s in task.ood_styles:
        if s not in STYLES or s == ID_STYLE:
            raise ValueError(f"ood style {s!r} is not an OOD style; valid: {', '.join(STYLES[1:])}")
    params = asdict(task)
    done = root / "task.json"
    desc = _describe(root, task)
    if _recorded(done) == params:
        remove_stale(root)
        return desc
    install(root, lambda tmp: _write_task(tmp, task, params), "task.json")
    return desc


def _write_task(root: Path, task: ShiftTask, params: dict) -> None:
    """Every tree of ``task`` under ``root``, ``task.json`` last."""
    classes, n = list(task.classes), task.size
    imgs, ys = render(classes, task.train_per_class, ID_STYLE, n, task.seed)
    _write_folder(root / "id_train", classes, imgs, ys)
    imgs, ys = render(classes, task.test_per_class, ID_STYLE, n, task.seed + 1)
    _write_folder(root / "id_test", classes, imgs, ys)
    for j, style in enumerate(task.ood_styles):
        imgs, ys = render(classes, task.ood_per_class, style, n, task.seed + 100 + j, task.strength)
        _write_folder(root / "ood" / style, classes, imgs, ys)
    if task.subset_style:
        sub = classes[::2]
        aliases = [f"s{classes.index(c):04d}" for c in sub]
        imgs, ys = render(
            sub, task.ood_per_class, task.subset_style, n, task.seed + 200, task.strength
        )
        folder = root / "ood" / f"{task.subset_style}_subset"
        _write_folder(folder, aliases, imgs, ys)
        (folder / "class_map.json").write_text(
            json.dumps(dict(zip(aliases, sub, strict=True)), indent=2)
        )
    (root / "task.json").write_text(json.dumps({"params": params, "classes": classes}, indent=2))


def _recorded(done: Path):
    """The params ``task.json`` records (None: missing, or half-written by a killed run)."""
    try:
        return json.loads(done.read_text()).get("params")
    except (OSError, ValueError, AttributeError):
        return None


def _describe(root: Path, task: ShiftTask) -> dict:
    root = root.resolve()
    ood = {s: {"root": str(root / "ood" / s), "class_map": None} for s in task.ood_styles}
    if task.subset_style:
        folder = root / "ood" / f"{task.subset_style}_subset"
        ood[f"{task.subset_style}_subset"] = {
            "root": str(folder),
            "class_map": str(folder / "class_map.json"),
        }
    return {
        "classes": list(task.classes),
        "id_train": str(root / "id_train"),
        "id_test": str(root / "id_test"),
        "ood": ood,
    }
