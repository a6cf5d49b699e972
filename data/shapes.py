"""Small natural-looking images of coloured shapes on textured backgrounds (no download).

One call renders one RGB image::

    rng = np.random.default_rng(0)
    img = render("triangle", "red", "grass", size=64, rng=rng)          # (64, 64, 3) uint8
    caption("triangle", "red", "grass")                                  # "a red triangle on grass"

Every image is drawn at 4x resolution and downsampled (anti-aliased edges). Pose (centre,
scale, rotation), colour jitter, shading and the background texture are random draws from
``rng``, so the same class looks different in every image while the class (shape + colour)
stays learnable.

``style`` changes the rendering domain while keeping the content, for distribution-shift
experiments:

- ``plain``: textured background, shaded shape (the in-distribution look);
- ``sketch``: grey pencil outline of the shape on paper (no colour fill; colour survives
  only as a faint tint of the stroke);
- ``cartoon``: flat background colour, flat fill, thick black outline;
- ``noisy``: ``plain`` plus strong Gaussian sensor noise;
- ``dark``: ``plain`` at low exposure with a colour cast.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross", "diamond", "ring")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 215),
    "yellow": (240, 215, 40),
    "purple": (140, 50, 180),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
    "pink": (245, 130, 185),
    "cyan": (40, 200, 220),
}
BACKGROUNDS = ("grass", "sand", "sky", "water", "brick", "wood", "snow", "gravel")
STYLES = ("plain", "sketch", "cartoon", "noisy", "dark")
SUPERSAMPLE = 4


def caption(shape: str, colour: str, background: str | None = None) -> str:
    """English description, e.g. ``"a red triangle on grass"``."""
    text = f"a {colour} {shape}"
    return f"{text} on {background}" if background else text


def check_names(shape: str, colour: str, background: str, style: str = "plain") -> None:
    """Raise ``ValueError`` naming the first unknown argument and the valid choices."""
    for what, value, valid in (
        ("shape", shape, SHAPES),
        ("colour", colour, tuple(COLOURS)),
        ("background", background, BACKGROUNDS),
        ("style", style, STYLES),
    ):
        if value not in valid:
            raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


# --------------------------------------------------------------------------- textures


def value_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise in [0, 1], shape (size, size): a random ``cells x cells`` grid upsampled."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    img = Image.fromarray((grid * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def fractal_noise(
    size: int, rng: np.random.Generator, octaves: int = 4, base: int = 3
) -> np.ndarray:
    """Sum of value-noise octaves (1/f-like natural texture), in [0, 1]."""
    total, weight = np.zeros((size, size), np.float32), 0.0
    for o in range(octaves):
        w = 0.5**o
        total += w * value_noise(size, base * 2**o, rng)
        weight += w
    return total / weight


def _mix(a, b, t: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a + (b - a) * t[..., None]


def background_texture(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size, 3) float32 texture in [0, 255] for background ``name``."""
    n = fractal_noise(size, rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if name == "grass":
        blades = value_noise(size, max(4, size // 2), rng) ** 2
        img = _mix((40, 95, 30), (120, 180, 60), np.clip(0.6 * n + 0.5 * blades, 0, 1))
    elif name == "sand":
        grain = rng.random((size, size)).astype(np.float32)
        img = _mix((190, 160, 110), (235, 210, 160), np.clip(0.7 * n + 0.3 * grain, 0, 1))
    elif name == "sky":
        clouds = np.clip((n - 0.45) * 3, 0, 1)
        img = _mix(_mix((70, 130, 210), (150, 195, 240), yy), np.full(3, 245.0), clouds)
    elif name == "water":
        phase = rng.uniform(0, 2 * math.pi)
        waves = 0.5 + 0.5 * np.sin(2 * math.pi * (6 * yy + 1.5 * n) + phase)
        img = _mix((20, 70, 120), (60, 140, 170), np.clip(0.6 * waves + 0.4 * n, 0, 1))
    elif name == "brick":
        rows = 6
        y = yy * rows
        x = xx * 3 + 0.5 * (np.floor(y) % 2)
        mortar = (np.minimum(y % 1, 1 - y % 1) < 0.07) | (np.minimum(x % 1, 1 - x % 1) < 0.04)
        img = _mix((150, 60, 40), (190, 95, 70), n)
        img[mortar] = (200, 195, 185)
    elif name == "wood":
        rings = 0.5 + 0.5 * np.sin(2 * math.pi * (10 * xx + 3 * n))
        img = _mix((110, 65, 30), (175, 120, 70), rings)
    elif name == "snow":
        img = _mix((205, 215, 230), (250, 250, 255), n)
    elif name == "gravel":
        stones = value_noise(size, max(4, size // 4), rng)
        img = _mix((90, 90, 85), (170, 165, 155), np.clip(0.5 * stones + 0.5 * n, 0, 1))
    else:
        raise ValueError(f"unknown background {name!r}; valid: {', '.join(BACKGROUNDS)}")
    return np.clip(img, 0, 255)


# --------------------------------------------------------------------------- shapes


def shape_polygon(
    shape: str, cx: float, cy: float, radius: float, angle: float
) -> list[tuple[float, float]]:
    """Vertices of ``shape`` (circle/ring as 64-gons) centred at (cx, cy)."""

    def ring(n: int, r: float, offset: float = 0.0) -> list[tuple[float, float]]:
        return [
            (
                cx + r * math.cos(angle + offset + 2 * math.pi * i / n),
                cy + r * math.sin(angle + offset + 2 * math.pi * i / n),
            )
            for i in range(n)
        ]

    if shape in ("circle", "ring"):
        return ring(64, radius)
    if shape == "square":
        return ring(4, radius * 1.05, math.pi / 4)
    if shape == "diamond":
        pts = ring(4, radius)
        return [(cx + (x - cx) * 0.65, y) if i % 2 == 0 else (x, y) for i, (x, y) in enumerate(pts)]
    if shape == "triangle":
        return ring(3, radius * 1.1, -math.pi / 2)
    if shape == "hexagon":
        return ring(6, radius)
    if shape == "star":
        outer, inner = (
            ring(5, radius, -math.pi / 2),
            ring(5, radius * 0.45, -math.pi / 2 + math.pi / 5),
        )
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if shape == "cross":
        a, b = radius, radius * 0.35
        local = [
            (-b, -a),
            (b, -a),
            (b, -b),
            (a, -b),
            (a, b),
            (b, b),
            (b, a),
            (-b, a),
            (-b, b),
            (-a, b),
            (-a, -b),
            (-b, -b),
        ]
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in local]
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased coverage in [0, 1], shape (size, size), at a random pose."""
    big = size * SUPERSAMPLE
    radius = big * rng.uniform(0.22, 0.34)
    cx, cy = (big * rng.uniform(0.38, 0.62) for _ in range(2))
    angle = rng.uniform(0, 2 * math.pi)
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    draw.polygon(shape_polygon(shape, cx, cy, radius, angle), fill=255)
    if shape == "ring":
        draw.polygon(shape_polygon("circle", cx, cy, radius * 0.55, angle), fill=0)
    small = canvas.resize((size, size), Image.LANCZOS)
    return np.asarray(small, np.float32) / 255.0


def _shading(size: int, rng: np.random.Generator) -> np.ndarray:
    """A soft directional light in [0.75, 1.15], shape (size, size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, 2 * math.pi)
    ramp = (xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta)
    return 0.95 + 0.4 * ramp


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Edge band of a coverage mask, in [0, 1]."""
    m = Image.fromarray((mask * 255).astype(np.uint8))
    grown = np.asarray(m.filter(ImageFilter.MaxFilter(2 * width + 1)), np.float32) / 255
    shrunk = np.asarray(m.filter(ImageFilter.MinFilter(2 * width + 1)), np.float32) / 255
    return np.clip(grown - shrunk, 0, 1)


# --------------------------------------------------------------------------- render


def render(
    shape: str,
    colour: str,
    background: str,
    size: int = 64,
    rng: np.random.Generator | None = None,
    style: str = "plain",
) -> np.ndarray:
    """Render one image of a ``colour`` ``shape`` on ``background``.

    Args:
        shape: one of ``SHAPES``; colour: a key of ``COLOURS``; background: one of ``BACKGROUNDS``.
        size: output side in pixels (>= 16).
        rng: ``numpy.random.Generator`` for pose, jitter and texture (default: a fresh one).
        style: one of ``STYLES`` (see the module docstring).

    Returns:
        ``(size, size, 3)`` uint8 RGB array.
    """
    check_names(shape, colour, background, style)
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    rng = rng if rng is not None else np.random.default_rng()
    mask = shape_mask(shape, size, rng)
    base = np.asarray(COLOURS[colour], np.float32) + rng.normal(0, 10, 3)
    if style == "sketch":
        paper = 235 + 10 * fractal_noise(size, rng)[..., None].repeat(3, -1)
        stroke = _outline(mask, max(1, size // 48))[..., None]
        ink = 0.8 * np.full(3, 60.0) + 0.2 * base
        img = paper * (1 - stroke) + ink * stroke
    elif style == "cartoon":
        bg = background_texture(background, size, rng).reshape(-1, 3).mean(0)
        img = np.broadcast_to(bg, (size, size, 3)) * (1 - mask[..., None]) + base * mask[..., None]
        line = _outline(mask, max(1, size // 32))[..., None]
        img = img * (1 - line)
    else:
        bg = background_texture(background, size, rng)
        texture = 0.85 + 0.3 * fractal_noise(size, rng, octaves=3, base=4)
        fill = base * (_shading(size, rng) * texture)[..., None]
        shadow = np.roll(mask, (max(1, size // 32),) * 2, (0, 1))[..., None] * 0.35
        img = bg * (1 - shadow) * (1 - mask[..., None]) + fill * mask[..., None]
        if style == "noisy":
            img = img + rng.normal(0, 40, img.shape)
        elif style == "dark":
            img = img * 0.35 + np.asarray([0, 10, 35]) * rng.uniform(0.5, 1.0)
    return np.clip(img, 0, 255).astype(np.uint8)
