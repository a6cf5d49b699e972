"""Few-shot image classification data: folder/CoOp split reading, seeded K-shot sampling,
base/novel class splits, and a generator that writes a shapes dataset as an ImageFolder tree.

An *item* is ``(path, label)``; a *split* is a list of items plus the ordered class names.

Formats read:

- ImageFolder: ``root/<class folder>/<image>``; classes are the sorted folder names, and a
  class's display name is its folder name with ``_`` turned into spaces.
- CoOp split file (``split_*.json``): ``{"train": [[relpath, label, classname], ...],
  "val": [...], "test": [...]}``, paths relative to an image root.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import shapes
from .generated import install, remove_stale
from .runs import read_json, write_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
Item = tuple[Path, int]


@dataclass
class Split:
    """One split: ``items`` (path, label) and the ordered ``classnames`` (label -> name)."""

    items: list[Item]
    classnames: list[str]

    def labels(self) -> list[int]:
        return [label for _, label in self.items]


# --------------------------------------------------------------------------- reading


def read_image_folder(root: str | Path, classnames: list[str] | None = None) -> Split:
    """Items of an ImageFolder tree. ``classnames`` fixes the class order (folder names);
    by default the sorted subfolders."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if classnames is None:
        wanted = folders
    else:
        wanted = [c.replace(" ", "_") for c in classnames]
        missing = [c for c in wanted if c not in folders]
        if missing:
            raise ValueError(
                f"image folder {root} has no class folder(s) {missing}; found {folders}"
            )
    if not wanted:
        raise ValueError(f"image folder {root} has no class subfolders")
    items: list[Item] = []
    for label, folder in enumerate(wanted):
        files = sorted(p for p in (root / folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(
                f"class folder {root / folder} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        items.extend((p, label) for p in files)
    return Split(items, [f.replace("_", " ") for f in wanted])


def read_coop_split(
    split_file: str | Path, image_root: str | Path | None = None
) -> dict[str, Split]:
    """Parse a CoOp ``split_*.json`` into ``{"train": Split, "val": Split, "test": Split}``.

    ``image_root`` defaults to the split file's folder. Class names come from the entries
    (label -> classname must be consistent across all splits).
    """
    split_file = Path(split_file)
    raw = read_json(split_file, "CoOp split file")
    root = Path(image_root) if image_root is not None else split_file.parent
    names: dict[int, str] = {}
    parsed: dict[str, list[Item]] = {}
    for part in ("train", "val", "test"):
        entries = raw.get(part)
        if not isinstance(entries, list):
            raise ValueError(
                f"{split_file}: missing list {part!r} (CoOp format: train/val/test lists)"
            )
        items = []
        for i, entry in enumerate(entries):
            if not (isinstance(entry, list | tuple) and len(entry) == 3):
                raise ValueError(
                    f"{split_file}: {part}[{i}] must be [path, label, classname], got {entry!r}"
                )
            path, label, name = entry
            if names.setdefault(int(label), name) != name:
                raise ValueError(
                    f"{split_file}: label {label} is named both {names[int(label)]!r} and {name!r}"
                )
            items.append((root / path, int(label)))
        parsed[part] = items
    n = max(names) + 1 if names else 0
    if sorted(names) != list(range(n)):
        raise ValueError(
            f"{split_file}: labels must be 0..{n - 1}; missing {sorted(set(range(n)) - set(names))}"
        )
    classnames = [names[i] for i in range(n)]
    return {part: Split(items, classnames) for part, items in parsed.items()}


def write_coop_split(path: str | Path, splits: dict[str, Split], image_root: str | Path) -> Path:
    """Write ``splits`` as a CoOp split file with paths relative to ``image_root``."""
    image_root = Path(image_root)
    data = {
        part: [
            [str(Path(p).relative_to(image_root)), label, s.classnames[label]]
            for p, label in s.items
        ]
        for part, s in splits.items()
    }
    for part in ("train", "val", "test"):
        data.setdefault(part, [])
    write_json(path, data)
    return Path(path)


# --------------------------------------------------------------------------- sampling


def sample_k_shot(split: Split, k: int, seed: int, labels: list[int] | None = None) -> Split:
    """``k`` items per class, drawn with ``seed`` (reproducible, independent of item order).

    ``labels`` restricts to those classes (the result keeps the original label ids).
    A class with fewer than ``k`` images raises ``ValueError`` naming it.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"shots must be a positive integer, got {k!r}")
    by_class: dict[int, list[Path]] = defaultdict(list)
    for path, label in split.items:
        by_class[label].append(Path(path))
    wanted = sorted(by_class) if labels is None else list(labels)
    rng = random.Random(seed)
    out: list[Item] = []
    for label in wanted:
        pool = sorted(by_class.get(label, []))
        if len(pool) < k:
            raise ValueError(
                f"class {split.classnames[label]!r} has {len(pool)} training images, fewer than shots={k}"
            )
        out.extend((p, label) for p in sorted(rng.sample(pool, k)))
    return Split(out, split.classnames)


def base_novel_labels(n_classes: int) -> tuple[list[int], list[int]]:
    """CoOp's base-to-novel protocol: the first ``ceil(n/2)`` labels are base, the rest novel."""
    m = math.ceil(n_classes / 2)
    return list(range(m)), list(range(m, n_classes))


def subset(split: Split, labels: list[int]) -> Split:
    """Only the items of ``labels``, relabelled 0..len(labels)-1 with matching class names."""
    remap = {old: new for new, old in enumerate(labels)}
    return Split(
        [(p, remap[lab]) for p, lab in split.items if lab in remap],
        [split.classnames[i] for i in labels],
    )


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB; an unreadable file raises ``ValueError`` naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None


# --------------------------------------------------------------------------- generator


@dataclass
class ShapesSpec:
    """A generated few-shot dataset: one class per ``"<colour> <shape>"`` string.

    Backgrounds are a nuisance drawn per image from ``backgrounds``; the class is shape and
    colour. ``style`` is a ``shapes.STYLES`` rendering domain.
    """

    classes: list[str] = field(
        default_factory=lambda: ["red circle", "green square", "blue triangle", "yellow star"]
    )
    train_per_class: int = 16
    test_per_class: int = 20
    size: int = 64
    seed: int = 0
    backgrounds: list[str] = field(default_factory=lambda: list(shapes.BACKGROUNDS))
    style: str = "plain"

    def parsed(self) -> list[tuple[str, str]]:
        out = []
        for c in self.classes:
            parts = c.split()
            if len(parts) != 2:
                raise ValueError(
                    f"generated class {c!r} must be '<colour> <shape>', e.g. 'red circle'"
                )
            shapes.check_names(parts[1], parts[0], self.backgrounds[0], self.style)
            out.append((parts[0], parts[1]))
        for b in self.backgrounds:
            shapes.check_names("circle", "red", b)
        return out

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def generate_shapes_dataset(root: str | Path, spec: ShapesSpec | dict | None = None) -> Path:
    """Write ``root/train/<class>/*.png`` and ``root/test/<class>/*.png`` (+ ``spec.json``).

    Skips the work when ``root/spec.json`` already records the same spec (a cache); a
    different recorded spec is regenerated; a non-empty folder without one is an error.
    Class folder names are the class strings with spaces turned into ``_``.

    The images are written to a temporary folder and renamed into ``root``, ``spec.json``
    last (``lorakit.data.generated.install``); ``root/.generating`` marks the folder as ours
    meanwhile, so a kill at any moment leaves a folder the next call regenerates.
    """
    spec = ShapesSpec(**spec) if isinstance(spec, dict) else (spec or ShapesSpec())
    pairs = spec.parsed()
    root = Path(root)
    marker, partial = root / "spec.json", root / GENERATING
    if _recorded(marker) == spec.fingerprint():
        partial.unlink(missing_ok=True)
        remove_stale(root)
        return root
    if not (marker.is_file() or partial.is_file()) and root.is_dir() and any(root.iterdir()):
        raise ValueError(
            f"{root} is not empty and holds no generated dataset (spec.json); choose another folder"
        )
    write_json(partial, {"fingerprint": spec.fingerprint()})  # ours from here on
    install(root, lambda tmp: _write_shapes(tmp, spec, pairs), "spec.json")
    partial.unlink(missing_ok=True)
    return root


def _write_shapes(root: Path, spec: ShapesSpec, pairs) -> None:
    rng = np.random.default_rng(spec.seed)
    for part, count in (("train", spec.train_per_class), ("test", spec.test_per_class)):
        for (colour, shape), name in zip(pairs, spec.classes, strict=True):
            folder = root / part / name.replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                bg = spec.backgrounds[int(rng.integers(len(spec.backgrounds)))]
                img = shapes.render(shape, colour, bg, spec.size, rng, spec.style)
                Image.fromarray(img).save(folder / f"{i:04d}.png")
    write_json(root / "spec.json", {"fingerprint": spec.fingerprint(), "spec": asdict(spec)})


GENERATING = ".generating"  # present while a dataset is being written


def _recorded(marker: Path) -> str | None:
    """The fingerprint ``spec.json`` records (None: missing or unreadable)."""
    try:
        return json.loads(marker.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
