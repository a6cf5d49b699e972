"""``RankedLoRA`` (``core/methods/ranked.py``, the base of SoRA, IncreLoRA, LoRA-Squeeze and
DiffoRA) pinned where mutation testing (``bash .ci/mutate core/methods/ranked.py``) found it
untested: ``set_rank`` to the current rank changes nothing (compared by value: ranks above
256 are distinct int objects), and the module's repr says it changes rank."""

import torch
from torch import nn

from lorakit.core import inject, make_config, methods


def test_set_rank_to_the_current_rank_changes_nothing_even_above_256():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 300))
    inject(model, make_config("sora", r=300, targets=("0",)))
    m = methods(model)[0]
    a, b = m.A, m.B
    values = (a.detach().clone(), b.detach().clone())
    m.set_rank(int("300"))  # equal to m.r, another int object
    assert m.A is a and m.B is b and m.r == 300
    assert torch.equal(m.A, values[0]) and torch.equal(m.B, values[1])
    assert m.take_resizes() == []  # no optimizer state to rebuild


def test_repr_marks_a_rank_changing_method():
    model = nn.Sequential(nn.Linear(6, 5))
    inject(model, make_config("sora", r=2, targets=("0",)))
    assert methods(model)[0].extra_repr().endswith("r=2, s=4 (rank-changing)")  # sora: alpha 8 / r 2
    assert "(rank-changing)" in repr(model)
