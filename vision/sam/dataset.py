"""Training and evaluation items for SAM from a COD folder.

Each training item holds two photometric views of the same (randomly flipped) image:
``weak`` (flip only, for the EMA teacher) and ``strong`` (albumentations colour jitter,
blur, noise; for the student), the partial label map and the prompts. Both views share
one geometry, so teacher and student predictions compare pixel for pixel.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from lorakit.data.cod import CODFolder, CODSample

from .model import Prompt
from .prompts import PromptOptions, label_map, resize_box, resize_points, sample_points


def strong_view(seed: int | None = None) -> A.Compose:
    """Photometric-only augmentation (geometry must stay that of the weak view)."""
    return A.Compose(
        [
            A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.05, p=0.8),
            A.GaussianBlur(blur_limit=(3, 5), p=0.3),
            A.GaussNoise(std_range=(0.02, 0.08), p=0.3),
        ],
        seed=seed,
    )


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in 0-255 (SAM normalises itself)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()


def prepare(
    sample: CODSample,
    opts: PromptOptions,
    size: int,
    rng: np.random.Generator,
    labels: np.ndarray | None = None,
):
    """Resize to the model input and derive prompts: (image, labels, points, box).

    ``labels`` (H, W) {0, 1, 2} replaces the weak label map (self-training's pseudo-labels);
    the prompts still come from the weak labels.
    """
    hw = sample.image.shape[:2]
    weak = label_map(sample, opts.labels)
    points = sample_points(sample, weak, opts, rng)
    labels = weak if labels is None else labels
    image = cv2.resize(
        sample.image,
        (size, size),
        interpolation=cv2.INTER_AREA if hw[0] > size else cv2.INTER_LINEAR,
    )
    labels = cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)
    points = resize_points(points, hw, size)
    box = resize_box(sample.box, hw, size) if sample.box is not None else np.zeros(4, np.float32)
    return image, labels, points, box


def prompt_of(points: torch.Tensor, box: torch.Tensor, mode: str) -> Prompt:
    return Prompt(points=points if "points" in mode else None, box=box if "box" in mode else None)


class CODTrainSet(Dataset):
    """Items: weak, strong (3, S, S) float 0-255; labels (S, S) long {0,1,2}; points (N, 3); box (4,)."""

    def __init__(
        self,
        folder: CODFolder,
        opts: PromptOptions,
        size: int,
        augment: bool = True,
        seed: int = 0,
        pseudo: dict[str, np.ndarray] | None = None,
    ):
        """``pseudo``: image name -> (H, W) {0, 1, 2} label map replacing its weak labels."""
        self.folder, self.opts, self.size, self.augment = folder, opts, size, augment
        self.pseudo = pseudo
        self.strong = strong_view(seed)

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> dict:
        # every draw derives from torch's RNG, which the runtime seeds per item (SeededItems)
        seed = int(torch.randint(0, 2**31 - 1, ()))
        rng = np.random.default_rng(seed)
        self.strong.set_random_seed(seed)
        sample = self.folder[i]
        override = None if self.pseudo is None else self.pseudo[sample.name]
        image, labels, points, box = prepare(sample, self.opts, self.size, rng, override)
        s = self.size
        if self.augment and rng.random() < 0.5:  # horizontal flip
            image, labels = image[:, ::-1], labels[:, ::-1]
            points[:, 0] = s - 1 - points[:, 0]
            box = np.asarray([s - 1 - box[2], box[1], s - 1 - box[0], box[3]], np.float32)
        if self.augment and rng.random() < 0.5:  # vertical flip
            image, labels = image[::-1], labels[::-1]
            points[:, 1] = s - 1 - points[:, 1]
            box = np.asarray([box[0], s - 1 - box[3], box[2], s - 1 - box[1]], np.float32)
        image = np.ascontiguousarray(image)
        strong = self.strong(image=image)["image"] if self.augment else image
        return {
            "weak": to_tensor(image),
            "strong": to_tensor(strong),
            "labels": torch.from_numpy(np.ascontiguousarray(labels)).long(),
            "points": torch.from_numpy(points),
            "box": torch.from_numpy(box),
        }


def eval_inputs(folder: CODFolder, i: int, opts: PromptOptions, size: int, seed: int = 0):
    """Deterministic prompts per image: (sample, image (3, S, S), Prompt)."""
    sample = folder[i]
    rng = np.random.default_rng([seed, i])
    image, _, points, box = prepare(sample, opts, size, rng)
    prompt = prompt_of(torch.from_numpy(points), torch.from_numpy(box), opts.mode)
    return sample, to_tensor(image), prompt
