"""Resumable data order and per-item seeded augmentation.

``StepSampler`` is a batch sampler over a whole run: micro-batch ``m`` holds positions
``[m B, (m + 1) B)`` of an endless stream made of one permutation of the data per pass
(seeded by ``(seed, pass)``), so the data order is a function of the position alone and
a resumed run continues exactly where the checkpoint was taken. ``B`` is the *global*
micro-batch: under DDP rank ``k`` of ``w`` takes items ``k, k + w, ...`` of it, so a
2-process run sees the same samples per optimizer step as a 1-process run.

Each item comes with a seed derived from its stream position; ``SeededItems`` runs the
dataset's ``__getitem__`` under that seed (torch, numpy and ``random``), so augmentation
draws are the same after a resume, in any DDP split, whatever was prefetched before.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Dataset

_MIX = 1_000_003  # a prime: seeds for different (seed, position) pairs do not collide


def item_seed(seed: int, position: int) -> int:
    return (int(seed) * _MIX * _MIX + int(position)) % (2**63)


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the running process group, ``(0, 1)`` outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@contextmanager
def seeded(seed: int):
    """Seed torch (CPU), numpy and ``random`` for the block, then restore their states."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


class StepSampler:
    """Batch sampler of ``(index, item_seed)`` lists for micro-batches ``position .. total-1``.

    ``len()`` is ``total`` (the whole run is one Lightning epoch); iteration starts at
    ``position`` (micro-batches already consumed, restored from the checkpoint).
    """

    def __init__(self, n: int, batch_size: int, total: int, seed: int):
        if n < 1:
            raise ValueError("the training set is empty")
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.n, self.batch_size, self.total, self.seed = int(n), int(batch_size), int(total), seed
        self.position = 0

    def __len__(self) -> int:
        return self.total

    def _perm(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(item_seed(self.seed, epoch))
        return torch.randperm(self.n, generator=gen)

    def global_batch(self, m: int) -> list[tuple[int, int]]:
        """All ``B`` items of micro-batch ``m`` as ``(index, item_seed)``."""
        first, last, out = m * self.batch_size, (m + 1) * self.batch_size, []
        for epoch in range(first // self.n, (last - 1) // self.n + 1):
            perm = self._perm(epoch)
            lo, hi = max(first, epoch * self.n), min(last, (epoch + 1) * self.n)
            out += [(int(perm[p - epoch * self.n]), item_seed(self.seed, p)) for p in range(lo, hi)]
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rank, size = world()
        for m in range(self.position, self.total):
            yield self.global_batch(m)[rank::size]

    def data_state(self, position: int) -> dict:
        return {"n": self.n, "batch_size": self.batch_size, "seed": self.seed, "position": position}

    def load_data_state(self, state: dict) -> None:
        """Continue at the checkpoint's position; a changed data set or batch is an error."""
        for key in ("n", "batch_size", "seed"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"the checkpoint was written with data {key}={state[key]}, this run has "
                    f"{getattr(self, key)}: resume with the same config, or delete checkpoints/"
                )
        self.position = int(state["position"])


class SeededItems(Dataset):
    """``dataset[i]`` run under the item's seed: keys are ``(index, item_seed)`` pairs."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        with seeded(seed):
            return self.dataset[index]
