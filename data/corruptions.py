"""ImageNet-C style corruption suite built from albumentations (severities 1-5, seeded).

Fourteen of ImageNet-C's fifteen corruptions in its four families (``frost`` needs the
frost photographs ImageNet-C ships, so it is left out)::

    noise    gaussian_noise  shot_noise  impulse_noise
    blur     defocus_blur    glass_blur  motion_blur  zoom_blur
    weather  snow  fog  brightness
    digital  contrast  elastic_transform  pixelate  jpeg_compression

Each (corruption, severity) is one albumentations transform with fixed magnitudes (the
table below, this project's choice for small images; pixel sizes scale with the image).
Randomness (noise draws, blur angles) comes from a seed derived from
``(seed, corruption, severity, image index)``, so a suite is deterministic per seed and
independent of the order or batching in which images are corrupted.

    imgs = corrupt(images, "motion_blur", severity=3, seed=0)   # (N, H, W, 3) uint8
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import albumentations as A
import numpy as np

SEVERITIES = (1, 2, 3, 4, 5)

FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}


def _odd(k: float) -> int:
    k = max(3, int(round(k)))
    return k if k % 2 else k + 1


def _px(size: int, base: float) -> float:
    """A pixel magnitude defined at 64 px, scaled to the image size."""
    return base * max(size, 16) / 64.0


# corruption -> builder(severity index 0..4, image size) -> albumentations transform (p=1)
_BUILDERS: dict[str, Callable[[int, int], A.BasicTransform]] = {
    "gaussian_noise": lambda i, n: A.GaussNoise(
        std_range=((v := (0.08, 0.12, 0.18, 0.26, 0.38)[i]), v), p=1.0
    ),
    "shot_noise": lambda i, n: A.ShotNoise(
        scale_range=((v := (0.1, 0.2, 0.35, 0.6, 1.0)[i]), v), p=1.0
    ),
    "impulse_noise": lambda i, n: A.SaltAndPepper(
        amount=((v := (0.01, 0.02, 0.04, 0.07, 0.11)[i]), v), p=1.0
    ),
    "defocus_blur": lambda i, n: A.Defocus(
        radius=((r := max(1, round(_px(n, (2, 3, 4, 6, 8)[i])))), r),
        alias_blur=((a := (0.1, 0.2, 0.3, 0.4, 0.5)[i]), a),
        p=1.0,
    ),
    "glass_blur": lambda i, n: A.GlassBlur(
        sigma=(0.5, 0.6, 0.7, 0.8, 1.0)[i],
        max_delta=max(1, round(_px(n, (1, 1, 2, 2, 3)[i]))),
        iterations=(1, 1, 2, 2, 2)[i],
        p=1.0,
    ),
    "motion_blur": lambda i, n: A.MotionBlur(
        blur_limit=((k := _odd(_px(n, (3, 4, 5, 7, 9)[i]))), k), allow_shifted=False, p=1.0
    ),
    "zoom_blur": lambda i, n: A.ZoomBlur(
        max_factor=((f := (1.06, 1.11, 1.16, 1.21, 1.26)[i]), f), step_factor=(0.02, 0.02), p=1.0
    ),
    "snow": lambda i, n: A.RandomSnow(
        snow_point_range=((v := (0.1, 0.2, 0.3, 0.4, 0.5)[i]), v), brightness_coeff=2.0, p=1.0
    ),
    "fog": lambda i, n: A.RandomFog(
        fog_coef_range=((v := (0.3, 0.45, 0.6, 0.75, 0.9)[i]), v), alpha_coef=0.1, p=1.0
    ),
    "brightness": lambda i, n: A.RandomBrightnessContrast(
        brightness_limit=((v := (0.1, 0.2, 0.3, 0.4, 0.5)[i]), v), contrast_limit=(0, 0), p=1.0
    ),
    "contrast": lambda i, n: A.RandomBrightnessContrast(
        brightness_limit=(0, 0), contrast_limit=((v := -(0.4, 0.5, 0.6, 0.7, 0.8)[i]), v), p=1.0
    ),
    "elastic_transform": lambda i, n: A.ElasticTransform(
        alpha=_px(n, (20, 30, 40, 55, 70)[i]), sigma=_px(n, (5, 5, 4.5, 4.5, 4)[i]), p=1.0
    ),
    "pixelate": lambda i, n: A.Downscale(
        scale_range=((v := (0.6, 0.5, 0.4, 0.3, 0.25)[i]), v), p=1.0
    ),
    "jpeg_compression": lambda i, n: A.ImageCompression(
        quality_range=((q := (25, 18, 15, 10, 7)[i]), q), p=1.0
    ),
}

CORRUPTIONS: tuple[str, ...] = tuple(c for fam in FAMILIES.values() for c in fam)


def family_of(name: str) -> str:
    for fam, names in FAMILIES.items():
        if name in names:
            return fam
    raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")


def resolve(names: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Corruption names from a list that may mix names and family names (``"noise"``),
    or ``"all"``/None for the whole suite. Unknown names raise ``ValueError``."""
    if names is None or names == "all":
        return list(CORRUPTIONS)
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for n in names:
        group = FAMILIES.get(n, (n,))
        for c in group:
            family_of(c)  # validates
            if c not in out:
                out.append(c)
    return out


def check_severity(severity: int) -> int:
    if severity not in SEVERITIES:
        raise ValueError(f"corruption severity must be one of {SEVERITIES}, got {severity!r}")
    return int(severity)


def image_seed(seed: int, name: str, severity: int, index: int) -> int:
    """A stable 32-bit seed per (suite seed, corruption, severity, image index)."""
    return zlib.crc32(f"{seed}:{name}:{severity}:{index}".encode()) & 0x7FFFFFFF


def build(name: str, severity: int, size: int) -> A.BasicTransform:
    """The albumentations transform of one corruption at one severity for ``size`` px images."""
    family_of(name)
    return _BUILDERS[name](check_severity(severity) - 1, int(size))


def corrupt(
    images: np.ndarray, name: str, severity: int, seed: int = 0, start_index: int = 0
) -> np.ndarray:
    """Corrupt a batch: ``images`` (N, H, W, 3) uint8 -> (N, H, W, 3) uint8.

    ``start_index`` is the dataset index of ``images[0]`` (for chunked processing: the
    result does not depend on how a dataset is split into batches).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"corrupt expects (N, H, W, 3) uint8 images, got {images.shape} {images.dtype}"
        )
    t = build(name, severity, min(images.shape[1:3]))
    out = np.empty_like(images)
    for k, img in enumerate(images):
        t.set_random_seed(image_seed(seed, name, severity, start_index + k))
        out[k] = t(image=np.ascontiguousarray(img))["image"]
    return out


def corruption_grid(names=None, severities=SEVERITIES) -> list[tuple[str, int]]:
    """Every (corruption, severity) pair of a suite, in table order."""
    return [(c, check_severity(s)) for c in resolve(names) for s in severities]
