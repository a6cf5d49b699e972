"""Reader for the camouflaged-object-detection (COD) folder layout.

    root/Imgs/<name>.jpg|png      images (RGB)
    root/GT/<name>.png            ground truth (object > 127), needed for evaluation
    root/Scribble/<name>.png      weak label: 1 = foreground, 2 = background, 0 = unknown
    root/points.json              optional: {"<name>": [[x, y, label], ...]} label 1 fg / 0 bg
    root/boxes.json               optional: {"<name>": [x0, y0, x1, y1]}

This is the layout of COD10K / CAMO / NC4K test sets and of the S-COD scribble release.
Every problem (a missing GT or scribble, a label of another size, an unreadable image,
values outside 0/1/2) is a ``ValueError`` that names the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
WEAK_KINDS = ("scribble", "points", "box")


@dataclass
class CODSample:
    """One image with its labels (``None`` where the layout has none).

    image: (H, W, 3) uint8. gt: (H, W) bool. scribble: (H, W) uint8 in {0, 1, 2}.
    points: [[x, y, label], ...] in image pixels. box: [x0, y0, x1, y1].
    """

    name: str
    image: np.ndarray
    gt: np.ndarray | None = None
    scribble: np.ndarray | None = None
    points: list | None = None
    box: list | None = None


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None


def read_gray(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L") if im.mode not in ("L", "P") else im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"cannot read label {path}: {e}") from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must map image names to labels, got {type(data).__name__}")
    return data


class CODFolder:
    """A COD folder; checks that every image has the labels asked for when it opens.

    ``need_gt``: every image must have ``GT/<name>.png``. ``weak``: which weak labels
    must exist (any of ``scribble``, ``points``, ``box``). Images are read lazily.
    """

    def __init__(self, root: str | Path, need_gt: bool = True, weak: tuple[str, ...] = ()):
        self.root = Path(root)
        bad = [w for w in weak if w not in WEAK_KINDS]
        if bad:
            raise ValueError(f"unknown weak label kind(s) {bad}; valid: {', '.join(WEAK_KINDS)}")
        imgs = self.root / "Imgs"
        if not imgs.is_dir():
            raise ValueError(f"{self.root} is not a COD folder: {imgs} is missing")
        self.images = sorted(p for p in imgs.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise ValueError(f"{imgs} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.need_gt, self.weak = need_gt, tuple(weak)
        self.points = _read_json(self.root / "points.json") if "points" in weak else {}
        self.boxes = _read_json(self.root / "boxes.json") if "box" in weak else {}
        for img in self.images:
            self._check_present(img.stem)

    @property
    def names(self) -> list[str]:
        return [p.stem for p in self.images]

    def __len__(self) -> int:
        return len(self.images)

    def _label_path(self, sub: str, name: str) -> Path:
        return self.root / sub / f"{name}.png"

    def _check_present(self, name: str) -> None:
        if self.need_gt and not self._label_path("GT", name).is_file():
            raise ValueError(
                f"ground truth {self._label_path('GT', name)} is missing for image {name}"
            )
        if "scribble" in self.weak and not self._label_path("Scribble", name).is_file():
            raise ValueError(
                f"scribble {self._label_path('Scribble', name)} is missing for image {name}"
            )
        if "points" in self.weak and name not in self.points:
            raise ValueError(f"{self.root / 'points.json'} has no entry for image {name}")
        if "box" in self.weak and name not in self.boxes:
            raise ValueError(f"{self.root / 'boxes.json'} has no entry for image {name}")

    def _sized(self, arr: np.ndarray, path: Path, shape: tuple[int, int]) -> np.ndarray:
        if arr.shape[:2] != shape:
            raise ValueError(
                f"{path} has size {arr.shape[1]}x{arr.shape[0]}, but its image is "
                f"{shape[1]}x{shape[0]} (W x H)"
            )
        return arr

    def __getitem__(self, i: int) -> CODSample:
        path = self.images[i]
        name = path.stem
        image = read_rgb(path)
        sample = CODSample(name, image)
        hw = image.shape[:2]
        gt_path = self._label_path("GT", name)
        if gt_path.is_file():
            sample.gt = self._sized(read_gray(gt_path), gt_path, hw) > 127
        if "scribble" in self.weak:
            sp = self._label_path("Scribble", name)
            scribble = self._sized(read_gray(sp), sp, hw)
            if scribble.max() > 2:
                raise ValueError(
                    f"scribble {sp} holds value {int(scribble.max())}; expected 1 = foreground, "
                    "2 = background, 0 = unknown"
                )
            sample.scribble = scribble.astype(np.uint8)
        if "points" in self.weak:
            sample.points = self._points(name, hw)
        if "box" in self.weak:
            sample.box = self._box(name, hw)
        return sample

    def _points(self, name: str, hw: tuple[int, int]) -> list:
        pts = self.points[name]
        ok = isinstance(pts, list) and all(isinstance(p, list) and len(p) == 3 for p in pts)
        if not ok or not pts or not all(0 <= p[0] < hw[1] and 0 <= p[1] < hw[0] for p in pts):
            raise ValueError(
                f"{self.root / 'points.json'}: entry {name!r} must be a non-empty list of "
                f"[x, y, label] inside the {hw[1]}x{hw[0]} image, got {pts!r}"
            )
        return pts

    def _box(self, name: str, hw: tuple[int, int]) -> list:
        box = self.boxes[name]
        if not (isinstance(box, list) and len(box) == 4 and box[0] <= box[2] and box[1] <= box[3]):
            raise ValueError(
                f"{self.root / 'boxes.json'}: entry {name!r} must be [x0, y0, x1, y1], got {box!r}"
            )
        return box
