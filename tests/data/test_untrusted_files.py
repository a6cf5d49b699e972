"""Nothing lorakit reads from a run folder or a continual state file can execute code.
(A payload in ``last.ckpt`` through ``lorakit train`` is tests/apps/test_run_safety.py's.)"""

import json
import os
import shutil

import pytest
import torch

from lorakit.data.continual.loop import load_state


class _Payload:
    """Unpickling this object runs ``touch marker`` (what an attacker's checkpoint does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _doctored(path, marker, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": 3, "state_dict": {}, "loops": {}, "x": _Payload(marker), **extra}, path)


def test_a_plain_continual_state_still_loads(tmp_path):
    state = tmp_path / "state.pt"
    torch.save({"model": {"w": torch.ones(2)}, "carried": {"basis": [torch.zeros(1)], "k": 1}}, state)
    saved = load_state(state)
    assert torch.equal(saved["model"]["w"], torch.ones(2)) and saved["carried"]["k"] == 1


def test_lightning_checkpoint_load_is_pinned_to_weights_only(tmp_path, monkeypatch):
    """Even when the environment asks torch for unsafe loads by default."""
    import pickle

    from lorakit.data.runtime import AtomicCheckpointIO

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    _doctored(tmp_path / "last.ckpt", marker)
    with pytest.raises(pickle.UnpicklingError):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "last.ckpt")
    assert not marker.exists()


class _Domain:
    task_names, higher_is_better = ["a"], True

    def build_model(self, seed):
        return torch.nn.Linear(2, 2)


class _Method:
    def begin_task(self, model, t):
        pass


def test_pickle_payload_in_a_continual_state_file_never_runs(tmp_path):
    from lorakit.data.continual.loop import build_model, run_task
    from lorakit.data.runs import RunFolder

    marker = tmp_path / "pwned"
    state = tmp_path / "after-00.pt"
    torch.save({"model": {}, "carried": _Payload(marker)}, state)
    with pytest.raises(ValueError, match="after-00.pt holds pickled objects other than tensors"):
        build_model(_Domain(), _Method(), 1, state, 0)  # the state a resumed task starts from
    # the state a finished sweep candidate left (read to pick the best learning rate)
    cand = tmp_path / "run" / "tasks" / "00-a" / "lr0"
    cand.mkdir(parents=True)
    (cand / "result.json").write_text(json.dumps({"val": 1.0, "train_seconds": 1.0}))
    shutil.copy(state, cand / "state.pt")
    cfg = {"optim": {"lr": 0.1}, "trainer": {}}
    with pytest.raises(ValueError, match="state.pt holds pickled objects"):
        run_task(_Domain(), _Method(), cfg, RunFolder(tmp_path / "run"), 0, [0], None, None)
    assert not marker.exists()
