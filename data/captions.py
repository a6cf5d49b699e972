"""Captioned images for pretraining a tiny CLIP offline, with attribute combinations held out.

An image shows one ``colour`` ``shape`` on a ``background`` in a rendering ``style``; its
caption composes those attributes in one of several phrasings::

    pairs = COMBOS.pretrain                      # (colour, shape) pairs pretraining may show
    images, captions = captioned_images(pairs, 1000, size=32, seed=0)
    images.shape, captions[0]                    # (1000, 32, 32, 3) uint8, "a red circle on grass"

``COMBOS`` splits every ``colour x shape`` pair into the pairs pretraining sees and three
disjoint groups of *unseen* pairs: ``heldout`` (the zero-shot retention dataset), ``task``
(the few-shot classes; the first half is the base, the rest the novel classes) and ``val``
(spare unseen classes, e.g. for a validation task). Each colour and each shape occurs in
pretraining, only those combinations never do, so zero-shot accuracy on them measures
whether the model composes attributes it learnt separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import shapes

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black", "pink", "cyan")
SHAPES = shapes.SHAPES  # 8 shapes
STYLE_WEIGHTS = {"plain": 0.75, "cartoon": 0.25}  # the styles pretraining draws
TEMPLATES = (
    "a {c} {s} on {b}",
    "a photo of a {c} {s}.",
    "a {c} {s}",
    "a {s} that is {c}, on {b}",
    "a photo of a {c} {s} on {b}.",
    "{b} background with a {c} {s}",
)
CARTOON_TEMPLATES = ("a cartoon of a {c} {s}", "a drawing of a {c} {s} on {b}")
Pair = tuple[str, str]


@dataclass(frozen=True)
class ComboSplit:
    """Disjoint ``(colour, shape)`` pair lists; only ``pretrain`` is ever shown in pretraining."""

    pretrain: tuple[Pair, ...]
    heldout: tuple[Pair, ...]
    task: tuple[Pair, ...]
    val: tuple[Pair, ...]

    def unseen(self) -> tuple[Pair, ...]:
        return self.heldout + self.task + self.val


def combo_split() -> ComboSplit:
    """Colour ``i`` and shape ``j`` are unseen when ``(i + j) % 10 < 3`` (24 of 80 pairs: every
    colour and shape keeps 5+ pretraining partners); the unseen pairs are dealt round-robin
    into ``heldout``, ``task`` and ``val`` (8 each)."""
    seen, unseen = [], []
    for i, c in enumerate(COLOURS):
        for j, s in enumerate(SHAPES):
            (unseen if (i + j) % 10 < 3 else seen).append((c, s))
    unseen.sort(key=lambda p: ((COLOURS.index(p[0]) + SHAPES.index(p[1])) % 10, p))
    groups = [unseen[k::3] for k in range(3)]
    return ComboSplit(tuple(seen), *(tuple(g) for g in groups))


COMBOS = combo_split()


def classname(pair: Pair) -> str:
    """``("red", "circle")`` -> ``"red circle"`` (the few-shot class name format)."""
    return f"{pair[0]} {pair[1]}"


def caption(pair: Pair, background: str, style: str, rng: np.random.Generator) -> str:
    """One phrasing of the attributes, drawn with ``rng``."""
    templates = CARTOON_TEMPLATES if style == "cartoon" else TEMPLATES
    t = templates[int(rng.integers(len(templates)))]
    return t.format(c=pair[0], s=pair[1], b=background)


def captioned_images(
    pairs: tuple[Pair, ...] | list[Pair], n: int, size: int = 32, seed: int = 0
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``n`` images of ``pairs`` (uniform), their captions and what each caption pins down.

    Returns ``(images (n, size, size, 3) uint8, captions, keys (n, 3) int64)``; ``keys`` row
    ``k`` is ``(pair index, background index or -1 when the caption names none, style
    index)``: image ``i`` fits caption ``j`` when pair and style agree and the caption's
    background is unnamed or the image's (see ``matches``).
    """
    if not pairs:
        raise ValueError("captioned_images needs at least one (colour, shape) pair")
    rng = np.random.default_rng(seed)
    styles, weights = list(STYLE_WEIGHTS), list(STYLE_WEIGHTS.values())
    images = np.empty((n, size, size, 3), np.uint8)
    texts, keys = [], np.empty((n, 3), np.int64)
    for k in range(n):
        p = int(rng.integers(len(pairs)))
        bg = shapes.BACKGROUNDS[int(rng.integers(len(shapes.BACKGROUNDS)))]
        style = styles[int(rng.choice(len(styles), p=weights))]
        images[k] = shapes.render(pairs[p][1], pairs[p][0], bg, size, rng, style)
        text = caption(pairs[p], bg, style, rng)
        texts.append(text)
        b = shapes.BACKGROUNDS.index(bg)
        keys[k] = (p, b if bg in text else -1, styles.index(style))
    return images, texts, keys


def matches(keys: np.ndarray) -> np.ndarray:
    """``(n, n)`` bool: ``[i, j]`` is true when image ``i`` fits caption ``j`` (``keys`` as
    ``captioned_images`` returns them); the contrastive targets of pretraining."""
    img, txt = keys[:, None, :], keys[None, :, :]
    same = (img[..., 0] == txt[..., 0]) & (img[..., 2] == txt[..., 2])
    return same & ((txt[..., 1] < 0) | (img[..., 1] == txt[..., 1]))


def class_images(
    pairs: tuple[Pair, ...] | list[Pair],
    per_class: int,
    size: int = 32,
    seed: int = 0,
    style: str = "plain",
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each pair (class ``k`` = ``pairs[k]``) on random backgrounds.

    Returns ``(images (C * per_class, size, size, 3) uint8, labels (C * per_class,))``.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((len(pairs) * per_class, size, size, 3), np.uint8)
    labels = np.repeat(np.arange(len(pairs)), per_class)
    for k, label in enumerate(labels):
        colour, shape = pairs[label]
        bg = shapes.BACKGROUNDS[int(rng.integers(len(shapes.BACKGROUNDS)))]
        images[k] = shapes.render(shape, colour, bg, size, rng, style)
    return images, labels
