"""SLTrain (``core/methods/sltrain.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/sltrain.py``) found it untested: a support of a layer with 2^31 or more entries
is stored as ``int64`` (its flat indices do not fit ``int32``). ``torch.randperm`` is replaced
by a stand-in permutation so that no 2^31-entry tensor is built."""

import torch

from lorakit.core.methods.sltrain import random_support


def test_flat_indices_past_int32_are_kept_exactly(monkeypatch):
    monkeypatch.setattr(torch, "randperm", lambda n, generator=None: torch.tensor(
        [n - 1, 3, n - 5, 0], dtype=torch.int64))  # the first 3 are kept
    big = 2**31 + 7
    got = random_support(big, 3, seed=0, key="layer")
    assert got.dtype == torch.int64 and got.tolist() == [3, big - 5, big - 1]
    small = 2**31 - 1  # the largest index, 2^31 - 2, still fits int32
    got = random_support(small, 3, seed=0, key="layer")
    assert got.dtype == torch.int32 and got.tolist() == [3, small - 5, small - 1]
