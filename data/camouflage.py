"""Synthetic camouflage scenes in the COD layout, for tests, demos and benchmarks.

A scene is a textured background (oriented fractal noise coloured by a three-colour
palette) and one star-shaped object painted with a texture drawn from the *same* palette,
as real camouflage matches its surroundings in colour and betrays itself by the grain and
direction of its texture. The ``difficulty`` ``d`` in ``[0, 1]`` grades the cues (gap
``g = 1 - d``): the object's texture differs from the background's in scale (up to
``1 + 1.5 g`` times coarser or finer), in orientation (up to ``80 g`` degrees), or both
(drawn per scene); its colours shift only a little (``0.2 g^2``: colour-matched except at
the easiest levels); and its edge is feathered more as ``d`` grows. At 1 the object is
statistically identical to the background (invisible).

``cue="colour"`` keeps the earlier scenes (bit for bit): the object's colours shift by up
to ``0.45 g`` and its texture is only coarser, so colour alone finds it. The tiny SAM's
stand-in pretraining uses those (ordinary, visible objects, like SAM's own data).

``generate_cod(root, ...)`` writes the layout that ``lorakit.data.cod`` reads::

    root/Imgs/0000.png     RGB image (H, W, 3)
    root/GT/0000.png       ground-truth mask, 0 / 255
    root/Scribble/0000.png weak label: 1 = foreground, 2 = background, 0 = unknown
    root/points.json       {"0000": [[x, y, label], ...]}  label 1 fg / 0 bg
    root/boxes.json        {"0000": [x0, y0, x1, y1]}      the object's bounding box
    root/meta.json         the generator settings (a cache key for ``ensure_cod``)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .generated import install, remove_stale

FG, BG, UNKNOWN = 1, 2, 0  # scribble values (the S-COD convention)
# the cache key of generated folders: a new scene model must not reuse old scenes
GENERATOR = "lorakit.camouflage/2"
CUES = ("texture", "colour")


@dataclass(frozen=True)
class CamouflageSpec:
    """What to generate. ``difficulty`` 0 = obvious object, 1 = indistinguishable."""

    n: int = 32
    size: int = 128
    difficulty: float = 0.5
    seed: int = 0
    n_points: int = 3  # foreground and background points per image in points.json
    cue: str = "texture"  # texture (colour-matched) | colour (the earlier scenes)

    def validate(self) -> None:
        if self.cue not in CUES:
            raise ValueError(f"camouflage: cue must be one of {', '.join(CUES)}, got {self.cue!r}")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"camouflage: difficulty must be in [0, 1], got {self.difficulty!r}")
        if self.size < 32 or self.n < 1:
            raise ValueError(
                f"camouflage: need size >= 32 and n >= 1, got size={self.size}, n={self.n}"
            )


def fractal_noise(
    rng: np.random.Generator, size: int, base: float, octaves: int = 4, stretch: float = 1.0
) -> np.ndarray:
    """Noise in [0, 1] of shape ``(size, size)``; ``base`` is the coarsest cell count across
    the rows; ``stretch`` > 1 gives cells ``stretch`` times longer along x (a grain)."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = max(2, int(round(base * 2**o)))
        grid = rng.random((cells, max(2, int(round(cells / stretch)))), dtype=np.float32)
        out += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    return (out - out.min()) / (np.ptp(out) + 1e-6)


def oriented_noise(
    rng: np.random.Generator, size: int, base: float, angle: float, stretch: float
) -> np.ndarray:
    """``fractal_noise`` with its grain turned by ``angle`` degrees (drawn on a larger
    canvas, rotated, centre-cropped, so no border shows)."""
    big = int(np.ceil(size * 1.5))
    field = fractal_noise(rng, big, base * 1.5, stretch=stretch)
    rot = cv2.getRotationMatrix2D((big / 2, big / 2), angle, 1.0)
    field = cv2.warpAffine(field, rot, (big, big), flags=cv2.INTER_LINEAR)
    lo = (big - size) // 2
    return field[lo : lo + size, lo : lo + size]


def textured(
    rng: np.random.Generator,
    size: int,
    palette: np.ndarray,
    base: float,
    angle: float = 0.0,
    stretch: float = 1.0,
) -> np.ndarray:
    """An RGB texture in [0, 1]: two noise fields (same grain) blend the palette colours."""
    a = oriented_noise(rng, size, base, angle, stretch)
    b = oriented_noise(rng, size, base * 1.7, angle, stretch)
    img = palette[0] * (1 - a)[..., None] + palette[1] * a[..., None]
    return np.clip(img * (1 - 0.5 * b)[..., None] + palette[2] * (0.5 * b)[..., None], 0, 1)


def blob_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A star-convex object, ``(size, size)`` bool, radius 15-28% of the image."""
    radius = rng.uniform(0.15, 0.28) * size
    cy, cx = rng.uniform(radius + 2, size - radius - 2, size=2)
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    r = np.ones_like(theta)
    for k in (2, 3, 5):
        r += rng.uniform(0, 0.18) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    pts = np.stack([cx + radius * r * np.cos(theta), cy + radius * r * np.sin(theta)], 1)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def texture_cues(rng: np.random.Generator, difficulty: float) -> tuple[float, float]:
    """(scale factor, orientation offset in degrees) of the object's texture.

    Which cue betrays the object is drawn per scene: scale only, orientation only, or both;
    their size grows with the gap ``1 - difficulty``.
    """
    gap = 1.0 - difficulty
    kind = rng.integers(3)  # 0 scale, 1 orientation, 2 both
    scale = (1 + 1.5 * gap) ** (1 if rng.random() < 0.5 else -1) if kind != 1 else 1.0
    turn = float(rng.choice([-1, 1])) * 80 * gap if kind != 0 else 0.0
    return float(scale), turn


def _plain_texture(rng: np.random.Generator, size: int, palette: np.ndarray, base: float):
    """The earlier, unoriented texture (``cue="colour"`` scenes)."""
    a, b = fractal_noise(rng, size, base), fractal_noise(rng, size, base * 1.7)
    img = palette[0] * (1 - a)[..., None] + palette[1] * a[..., None]
    return np.clip(img * (1 - 0.5 * b)[..., None] + palette[2] * (0.5 * b)[..., None], 0, 1)


def _colour_cued(rng: np.random.Generator, size: int, difficulty: float):
    palette = rng.uniform(0.15, 0.85, size=(3, 3)).astype(np.float32)
    base = rng.uniform(3, 6)
    background = _plain_texture(rng, size, palette, base)
    gap = 1.0 - difficulty
    shift = rng.normal(size=3).astype(np.float32)
    shift = 0.45 * gap * shift / (np.linalg.norm(shift) + 1e-6)
    obj = _plain_texture(rng, size, np.clip(palette + shift, 0, 1), base * (1 + 1.5 * gap))
    return background, obj


def render_scene(
    rng: np.random.Generator, size: int, difficulty: float, cue: str = "texture"
) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(image uint8 (size, size, 3), mask bool (size, size))``."""
    if cue == "colour":
        background, obj = _colour_cued(rng, size, difficulty)
        return _composite(rng, size, difficulty, background, obj)
    palette = rng.uniform(0.15, 0.85, size=(3, 3)).astype(np.float32)
    base, angle, stretch = rng.uniform(3, 6), rng.uniform(0, 180), rng.uniform(2.0, 3.5)
    background = textured(rng, size, palette, base, angle, stretch)
    gap = 1.0 - difficulty
    shift = rng.normal(size=3).astype(np.float32)
    shift = 0.2 * gap**2 * shift / (np.linalg.norm(shift) + 1e-6)
    scale, turn = texture_cues(rng, difficulty)
    obj = textured(rng, size, np.clip(palette + shift, 0, 1), base * scale, angle + turn, stretch)
    return _composite(rng, size, difficulty, background, obj)


def _composite(rng, size: int, difficulty: float, background, obj):
    """Paste ``obj`` into ``background`` inside a random blob; returns (image, mask)."""
    mask = blob_mask(rng, size)
    alpha = mask.astype(np.float32)
    feather = 1 + 4 * difficulty  # soft edges hide the boundary at high difficulty
    alpha = cv2.GaussianBlur(alpha, (0, 0), feather) * 0.5 + alpha * 0.5
    img = background * (1 - alpha[..., None]) + obj * alpha[..., None]
    return (img * 255).round().astype(np.uint8), mask


def _stroke(canvas: np.ndarray, pts: np.ndarray, value: int, width: int) -> None:
    cv2.polylines(canvas, [pts.astype(np.int32).reshape(-1, 1, 2)], False, value, width)


def make_scribble(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scribble ``(H, W)`` uint8: a stroke inside the object (1), strokes outside (2), else 0."""
    size = mask.shape[0]
    width = max(1, size // 48)
    margin = max(2, size // 24)
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    inner = cv2.erode(mask.astype(np.uint8), kernel)
    if inner.sum() < 4:
        inner = mask.astype(np.uint8)
    outer = 1 - cv2.dilate(mask.astype(np.uint8), kernel)
    out = np.zeros(mask.shape, np.uint8)
    fg = np.zeros_like(out)
    ys, xs = np.nonzero(inner)
    pick = rng.choice(len(ys), size=min(4, len(ys)), replace=False)
    _stroke(fg, np.stack([xs[pick], ys[pick]], 1), 1, width)
    out[(fg > 0) & (inner > 0)] = FG
    ys, xs = np.nonzero(outer)
    for _ in range(3):
        bg = np.zeros_like(out)
        pick = rng.choice(len(ys), size=min(3, len(ys)), replace=False)
        _stroke(bg, np.stack([xs[pick], ys[pick]], 1), 1, width)
        out[(bg > 0) & (outer > 0)] = BG
    return out


def make_points(mask: np.ndarray, rng: np.random.Generator, n: int) -> list[list[int]]:
    """``n`` foreground points well inside the object and ``n`` background points."""
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    ys, xs = np.nonzero(inside >= 0.5 * inside.max())
    fg = rng.choice(len(ys), size=min(n, len(ys)), replace=False)
    pts = [[int(xs[i]), int(ys[i]), 1] for i in fg]
    ys, xs = np.nonzero(~mask)
    bg = rng.choice(len(ys), size=min(n, len(ys)), replace=False)
    return pts + [[int(xs[i]), int(ys[i]), 0] for i in bg]


def mask_box(mask: np.ndarray) -> list[int]:
    """Bounding box ``[x0, y0, x1, y1]`` (inclusive pixel coordinates) of a mask."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def generate_cod(root: str | Path, spec: CamouflageSpec) -> Path:
    """Write ``spec.n`` scenes in the COD layout under ``root`` (see the module docstring)."""
    spec.validate()
    root = Path(root)
    for sub in ("Imgs", "GT", "Scribble"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    points, boxes = {}, {}
    for i in range(spec.n):
        name = f"{i:04d}"
        image, mask = render_scene(rng, spec.size, spec.difficulty, spec.cue)
        Image.fromarray(image).save(root / "Imgs" / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "GT" / f"{name}.png")
        Image.fromarray(make_scribble(mask, rng)).save(root / "Scribble" / f"{name}.png")
        points[name] = make_points(mask, rng, spec.n_points)
        boxes[name] = mask_box(mask)
    (root / "points.json").write_text(json.dumps(points))
    (root / "boxes.json").write_text(json.dumps(boxes))
    (root / "meta.json").write_text(
        json.dumps({"generator": GENERATOR, **asdict(spec)}, indent=2)
    )
    return root


def ensure_cod(root: str | Path, spec: CamouflageSpec) -> Path:
    """Generate into ``root`` unless it already holds data made with the same ``spec``.

    Written atomically (``lorakit.data.generated.install``, ``meta.json`` last): a kill at
    any moment leaves the old data or a folder the next call regenerates.
    """
    root = Path(root)
    meta = root / "meta.json"
    try:
        if json.loads(meta.read_text()) == {"generator": GENERATOR, **asdict(spec)}:
            remove_stale(root)
            return root
    except (OSError, ValueError):
        pass  # missing, half-written or another spec: regenerate
    spec.validate()
    return install(root, lambda tmp: generate_cod(tmp, spec), "meta.json")
