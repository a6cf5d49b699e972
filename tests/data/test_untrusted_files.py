"""Nothing lorakit reads from a run folder or a continual state file can execute code."""

import os

import pytest
import torch

from lorakit.data.continual.loop import load_state
from lorakit.data.runtime.trainer import checkpoint_step


class _Payload:
    """Unpickling this object runs ``touch marker`` (what an attacker's checkpoint does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _doctored(path, marker, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": 3, "state_dict": {}, "loops": {}, "x": _Payload(marker), **extra}, path)


def test_pickle_payload_in_last_ckpt_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    _doctored(last, marker)
    with pytest.raises(ValueError) as e:
        checkpoint_step(last)
    assert not marker.exists()
    assert "\n" not in str(e.value) and str(last) in str(e.value)


def test_pickle_payload_in_continual_state_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    state = tmp_path / "task0" / "state.pt"
    _doctored(state, marker, model={}, carried=None)
    with pytest.raises(ValueError, match="continual state") as e:
        load_state(state)
    assert not marker.exists() and "\n" not in str(e.value)


def test_a_plain_continual_state_still_loads(tmp_path):
    state = tmp_path / "state.pt"
    torch.save({"model": {"w": torch.ones(2)}, "carried": {"basis": [torch.zeros(1)], "k": 1}}, state)
    saved = load_state(state)
    assert torch.equal(saved["model"]["w"], torch.ones(2)) and saved["carried"]["k"] == 1
