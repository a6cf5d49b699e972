"""Images for CLIP few-shot training and evaluation.

- ``ImageList``: a ``Dataset`` of ``(path, label)`` items, decoded and preprocessed the way
  open_clip's eval transform does (resize the short side to ``size`` with bicubic
  interpolation, centre crop), returned as uint8 ``(3, size, size)`` tensors.
- ``StepBatches``: the training stream. Batch ``t`` of a run is a pure function of
  ``(seed, t)`` (which images, which flips and crops), so a run resumed at step ``t``
  draws exactly the batches an uninterrupted run would. Under DDP each rank takes its
  share (``rank::world``) of the same global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lorakit.data.fewshot import Split, load_image


def preprocess(img: Image.Image, size: int) -> Tensor:
    """PIL RGB -> uint8 ``(3, size, size)``: short side to ``size`` (bicubic), centre crop."""
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return (
        torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        .view(size, size, 3)
        .permute(2, 0, 1)
        .clone()
    )


class ImageList(Dataset):
    """``split.items`` as ``(uint8 image (3, S, S), label)`` pairs."""

    def __init__(self, split: Split, size: int):
        self.split, self.size = split, size

    def __len__(self) -> int:
        return len(self.split.items)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, label = self.split.items[i]
        return preprocess(load_image(path), self.size), label


def load_all(split: Split, size: int, workers: int = 0) -> tuple[Tensor, Tensor]:
    """Decode a (small, K-shot) split into memory: uint8 ``(N, 3, S, S)`` and labels ``(N,)``."""
    if not split.items:
        raise ValueError("the training split is empty")
    loader = DataLoader(ImageList(split, size), batch_size=64, num_workers=workers)
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def eval_loader(split: Split, size: int, batch_size: int = 64, workers: int = 0) -> DataLoader:
    return DataLoader(ImageList(split, size), batch_size=batch_size, num_workers=workers)


class Normalize:
    """uint8 ``(N, 3, S, S)`` -> float, scaled to [0, 1], then CLIP mean/std normalised."""

    def __init__(self, mean, std):
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, x: Tensor) -> Tensor:
        return (x.float() / 255 - self.mean.to(x.device)) / self.std.to(x.device)


def augment(x: Tensor, gen: torch.Generator, scale: tuple[float, float] = (0.6, 1.0)) -> Tensor:
    """CLIP-LoRA's train augmentation on uint8 ``(N, 3, S, S)``: random resized crop + flip."""
    n, _, s, _ = x.shape
    out = torch.empty_like(x)
    area = torch.empty(n).uniform_(*scale, generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    for i in range(n):
        side = max(4, int(round(s * float(area[i]) ** 0.5)))
        top = int(torch.randint(0, s - side + 1, (1,), generator=gen))
        left = int(torch.randint(0, s - side + 1, (1,), generator=gen))
        crop = x[i : i + 1, :, top : top + side, left : left + side].float()
        crop = F.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False)
        out[i] = crop.round().clamp(0, 255).to(x.dtype)[0]
        if flips[i]:
            out[i] = out[i].flip(-1)
    return out


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StepBatches:
    """Iterable of ``(images float (B/world, 3, S, S), labels (B/world,))`` for micro-batches
    ``start_step .. steps - 1`` (its length is always ``steps``: the whole run is one
    Lightning epoch, and Lightning's batch counter continues from the checkpoint).

    Indices come from a fresh shuffle of the pool each epoch of the pool (a permutation
    seeded by ``(seed, epoch)``), so every image is seen once per pass as in a sampler.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        steps: int,
        seed: int,
        normalize: Normalize,
        train_augment: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"optim.batch_size must be positive, got {batch_size}")
        self.images, self.labels = images, labels
        self.batch_size, self.steps, self.seed = batch_size, steps, seed
        self.normalize, self.train_augment = normalize, train_augment
        self.start_step = 0

    def __len__(self) -> int:
        return self.steps

    def indices(self, step: int) -> Tensor:
        """The global batch of ``step`` (indices into the pool)."""
        n, b = len(self.labels), self.batch_size
        first, last = step * b, (step + 1) * b
        parts = []
        for epoch in range(first // n, (last - 1) // n + 1):
            perm = torch.randperm(
                n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            )
            lo, hi = max(first, epoch * n) - epoch * n, min(last, (epoch + 1) * n) - epoch * n
            parts.append(perm[lo:hi])
        return torch.cat(parts)

    def batch(self, step: int, shard: bool = True) -> tuple[Tensor, Tensor]:
        """This rank's share of the global batch ``step`` (``shard=False``: all of it); the
        crops and flips are drawn for the whole global batch, so a DDP split sees the same
        images as one process."""
        idx = self.indices(step)
        x = self.images[idx]
        if self.train_augment:
            x = augment(x, torch.Generator().manual_seed(self.seed * 7_919 + step))
        rank, world = _dist() if shard else (0, 1)
        return self.normalize(x[rank::world]), self.labels[idx][rank::world]

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            yield self.batch(step)

    def data_state(self, position: int) -> dict:
        """The data state a checkpoint keeps (the runtime's ``SamplerPosition``)."""
        return {"n": len(self.labels), "batch_size": self.batch_size, "seed": self.seed,
                "position": position}

    def load_data_state(self, state: dict) -> None:
        for key, mine in (("n", len(self.labels)), ("batch_size", self.batch_size),
                          ("seed", self.seed)):
            if state.get(key, mine) != mine:
                raise ValueError(
                    f"the checkpoint was written with data {key}={state[key]}, this run has "
                    f"{mine}: resume with the same config, or delete checkpoints/"
                )
        self.start_step = int(state["position"])
