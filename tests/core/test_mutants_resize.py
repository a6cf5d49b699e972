"""``core/resize.py`` pinned where mutation testing (``bash .ci/mutate core/resize.py``) found
it untested: the shrink-only resize, the returned count, every changed parameter visited, and
state tensors of another shape left alone. Expected values are built by hand from the inputs."""

import torch
from torch import nn

from lorakit.core.resize import rebuild_optimizer_state, resize_param


def _adam_after_one_step(*params):
    opt = torch.optim.Adam(params, lr=0.1)
    for p in params:
        p.grad = torch.arange(p.numel(), dtype=p.dtype).reshape(p.shape) + 1.0
    opt.step()
    return opt


def test_shrinking_without_new_rows_keeps_exactly_the_kept_moments():
    p = nn.Parameter(torch.arange(12.0).reshape(4, 3))
    opt = _adam_after_one_step(p)
    before = {k: v.clone() for k, v in opt.state[p].items()}
    rows = p.data[[0, 2]].clone()
    ch = resize_param(p, 0, torch.tensor([0, 2]))
    assert ch.n_new == 0 and ch.old_shape == (4, 3)
    assert torch.equal(p.data, rows)
    assert rebuild_optimizer_state(opt, [ch]) == 2  # exp_avg and exp_avg_sq; `step` is ()
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(opt.state[p][key], before[key][[0, 2]])
    assert torch.equal(opt.state[p]["step"], before["step"])
    p.grad = torch.ones_like(p)
    opt.step()  # the moments fit the parameter: Adam runs on the new shape


def test_growing_along_columns_appends_zero_moments_and_counts_them():
    p = nn.Parameter(torch.ones(2, 3))
    opt = _adam_after_one_step(p)
    avg, col = opt.state[p]["exp_avg"].clone(), p.data[:, 2].clone()
    ch = resize_param(p, 1, torch.tensor([2]), torch.full((2, 2), 5.0))
    assert ch.n_new == 2 and p.shape == (2, 3)
    assert torch.equal(p.data, torch.stack([col, torch.full((2,), 5.0), torch.full((2,), 5.0)], 1))
    assert rebuild_optimizer_state(opt, [ch]) == 2
    expected = torch.cat([avg[:, 2:], torch.zeros(2, 2)], 1)
    assert torch.equal(opt.state[p]["exp_avg"], expected)


def test_no_optimizer_rebuilds_nothing():
    p = nn.Parameter(torch.ones(3, 2))
    assert rebuild_optimizer_state(None, [resize_param(p, 0, torch.tensor([1]))]) == 0


def test_a_parameter_without_state_does_not_stop_the_others():
    fresh, trained = nn.Parameter(torch.ones(3, 2)), nn.Parameter(torch.ones(3, 2))
    opt = _adam_after_one_step(trained)
    opt.add_param_group({"params": [fresh]})  # in the optimizer, but never stepped
    avg = opt.state[trained]["exp_avg"].clone()
    changes = [resize_param(fresh, 0, torch.tensor([0])), resize_param(trained, 0, torch.tensor([1]))]
    assert rebuild_optimizer_state(opt, changes) == 2
    assert torch.equal(opt.state[trained]["exp_avg"], avg[[1]])
    assert fresh not in opt.state or not opt.state[fresh]


def test_state_tensors_of_another_shape_are_untouched():
    """Only tensors shaped like the parameter follow its rows: a longer 1-D state entry
    (shape (5,) sorts after (3, 2)) and a shorter one stay as they were."""
    p = nn.Parameter(torch.ones(3, 2))
    opt = _adam_after_one_step(p)
    longer, shorter = torch.arange(5.0), torch.arange(2.0)
    opt.state[p]["longer"], opt.state[p]["shorter"] = longer.clone(), shorter.clone()
    assert rebuild_optimizer_state(opt, [resize_param(p, 0, torch.tensor([2, 0]))]) == 2
    assert torch.equal(opt.state[p]["longer"], longer)
    assert torch.equal(opt.state[p]["shorter"], shorter)
    assert opt.state[p]["exp_avg"].shape == (2, 2)
