"""Image folders for ID training and OOD evaluation, with class-name maps and corruptions.

An OOD set is a folder of class sub-folders. Its folder names map onto the ID class list
either directly (same names) or through a class map (``{folder: id_class}``, a dict or a
JSON file), so subset benchmarks such as ImageNet-R (200 of 1000 classes, named by wnid)
work: predictions on a subset set are restricted to the classes it contains.

Items are ``(x, y)``: x float (3, S, S) in [0, 1], y the ID class index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from lorakit.data.corruptions import corrupt
from lorakit.data.runs import read_json

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def load_class_map(spec: dict | str | None, root: Path) -> dict[str, str] | None:
    """A class map from a dict, a JSON file path, or ``"auto"`` (``root/class_map.json``)."""
    if spec is None:
        return None
    if spec == "auto":
        spec = root / "class_map.json"
        if not Path(spec).is_file():
            return None
    if isinstance(spec, dict):
        return {str(k): str(v) for k, v in spec.items()}
    path = Path(spec)
    data = read_json(path, "class map file")
    if not isinstance(data, dict):
        raise ValueError(f"class map {path} must be a JSON object {{folder: class}}")
    return {str(k): str(v) for k, v in data.items()}


def folder_labels(
    root: Path, classes: list[str], class_map: dict[str, str] | None
) -> dict[str, int]:
    """Sub-folder name -> ID class index; unknown folders or targets raise ``ValueError``."""
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not folders:
        raise ValueError(f"image folder {root} has no class sub-folders")
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for name in folders:
        target = class_map.get(name) if class_map is not None else name
        if target is None:
            raise ValueError(f"{root}: folder {name!r} is not in the class map")
        if target not in index:
            hint = " (add a class_map for this set)" if class_map is None else ""
            raise ValueError(
                f"{root}: folder {name!r} maps to {target!r}, which is not an ID class{hint}"
            )
        out[name] = index[target]
    return out


class ImageFolderSet(Dataset):
    """Lazily loaded class-folder images, resized to ``size``; optional corruption.

    ``corruption=(name, severity, seed)`` applies ``lorakit.data.corruptions.corrupt`` to
    the uint8 image with its dataset index, so results do not depend on batching.
    """

    def __init__(
        self,
        root: str | Path,
        classes: list[str],
        size: int,
        class_map=None,
        corruption: tuple[str, int, int] | None = None,
        max_per_class: int | None = None,
    ):
        self.root, self.size, self.classes = Path(root), int(size), list(classes)
        self.corruption = corruption
        labels = folder_labels(self.root, self.classes, load_class_map(class_map, self.root))
        self.items: list[tuple[Path, int]] = []
        for name, y in labels.items():
            files = sorted(
                p for p in (self.root / name).iterdir() if p.suffix.lower() in IMAGE_EXTS
            )
            self.items += [(p, y) for p in files[:max_per_class]]
        if not self.items:
            raise ValueError(f"image folder {self.root} holds no images ({', '.join(IMAGE_EXTS)})")
        self.present = sorted({y for _, y in self.items})

    def with_corruption(self, name: str, severity: int, seed: int = 0) -> ImageFolderSet:
        other = object.__new__(ImageFolderSet)
        other.__dict__.update(self.__dict__)
        other.corruption = (name, int(severity), int(seed))
        return other

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> np.ndarray:
        path, _ = self.items[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (self.size, self.size):
                    im = im.resize((self.size, self.size), Image.BICUBIC)
                return np.array(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {path}: {e}") from None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.image(i)
        if self.corruption is not None:
            name, sev, seed = self.corruption
            img = corrupt(img[None], name, sev, seed, start_index=i)[0]
        return torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0), self.items[i][1]


@dataclass
class EvalSet:
    """One evaluation set: its dataset and, for subset sets, the class indices it holds."""

    name: str
    dataset: Dataset
    restrict: list[int] | None = None  # None: argmax over every class


def cached(dataset: Dataset, batch: int = 256) -> torch.utils.data.TensorDataset:
    """Materialise a small dataset as tensors (benchmarks reuse it across methods)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False)
    xs, ys = zip(*[(x, y) for x, y in loader], strict=True)
    return torch.utils.data.TensorDataset(torch.cat(xs), torch.cat(ys))
