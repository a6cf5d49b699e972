"""Each continual task trains through the shared ``run_training`` (``TaskRun``): a candidate
folder is an ordinary run folder, and a sequence killed inside a task resumes from the
task's checkpoint with its data position, ending bit for bit where an uninterrupted run ends.

A two-task toy domain (a small MLP on random data, every step its own batch) keeps this in
seconds and makes the data position matter: a resumed task that restarted its stream would
train on other batches and end elsewhere.
"""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lorakit.core import make_config
from lorakit.data.continual import run_sequence
from lorakit.data.continual.state import load_state


class Stream:
    """Batches for steps ``start .. steps-1``; step ``s``'s batch is a function of
    ``(seed, s)`` only (the runtime's ``data_state`` / ``load_data_state`` contract)."""

    def __init__(self, x, y, batch_size: int, steps: int, seed: int):
        self.x, self.y, self.b, self.steps, self.seed, self.start = x, y, batch_size, steps, seed, 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for s in range(self.start, self.steps):
            idx = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(self.seed * 7919 + s))
            yield self.x[idx[: self.b]], self.y[idx[: self.b]]

    def data_state(self, position: int) -> dict:
        return {"position": int(position)}

    def load_data_state(self, state: dict) -> None:
        self.start = int(state["position"])


class Toy:
    """Two tasks of 3-way classification of random 6-d points (a linear rule each)."""

    metric, higher_is_better = "neg_loss", True
    task_names, extra_names = ["a", "b"], []

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(2, 48, 6, generator=g)
        w = torch.randn(2, 6, 3, generator=g)
        self.y = torch.einsum("tnd,tdc->tnc", self.x, w).argmax(-1)

    def prepare(self, out) -> None:
        pass

    def build_model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

    def adapter_config(self, method: str, hyper: dict):
        return make_config(method, targets=(r"\d",), **hyper)

    def set_task(self, model, ids) -> None:
        pass

    def batches(self, ids, steps: int, batch_size: int, seed: int):
        x, y = torch.cat([self.x[j, :32] for j in ids]), torch.cat([self.y[j, :32] for j in ids])
        stream = Stream(x, y, batch_size, steps, seed)
        return stream, stream

    @staticmethod
    def loss(model, batch):
        return F.cross_entropy(model(batch[0]), batch[1])

    def evaluate(self, model, j: int, split: str) -> float:
        part = slice(32, 40) if split == "val" else slice(40, 48)
        with torch.no_grad():
            return -float(F.cross_entropy(model(self.x[j, part]), self.y[j, part]))

    def extras(self, model) -> dict:
        return {}


def toy_cfg(method: str = "lora") -> dict:
    return {
        "continual": {"domain": "toy", "tasks": ["a", "b"], "method": method},
        "adapter": {"r": 2, "alpha": 2.0, "r_g": 2, "T": 2},
        "optim": {"lr": [0.05, 0.02], "batch_size": 4, "weight_decay": 0.0},
        "trainer": {"max_steps": 6, "checkpoint_every": 2, "log_every": 1, "accelerator": "cpu",
                    "progress": False},  # fmt: skip
    }


class Kill(RuntimeError):
    pass


class KillInTask(L.Callback):
    """Stops the second task after its checkpoint at step 2."""

    def on_train_batch_end(self, trainer, *args):
        if "01-b/lr0" in str(trainer.default_root_dir) and trainer.global_step == 3:
            raise Kill


@pytest.mark.parametrize("method", ["lora", "gorp"])
def test_a_task_killed_mid_candidate_resumes_to_the_same_state(tmp_path, method):
    cfg = toy_cfg(method)
    cfg["optim"]["lr"] = 0.05  # one candidate: the killed one is the one kept
    full = run_sequence(Toy(), cfg, tmp_path / "a")
    with pytest.raises(Kill):
        run_sequence(Toy(), cfg, tmp_path / "b", [KillInTask()])
    again = run_sequence(Toy(), cfg, tmp_path / "b")
    row = json.loads((tmp_path / "b" / "tasks" / "01-b" / "row.json").read_text())
    assert [c["resumed_from_step"] for c in row["sweep"]] == [2]
    assert again["matrix"] == full["matrix"] and again["chosen_lr"] == full["chosen_lr"]
    a, b = (load_state(p / "state" / "after-01.pt")["model"] for p in (tmp_path / "a", tmp_path / "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_candidate_folder_is_a_run_of_the_shared_runtime(tmp_path):
    m = run_sequence(Toy(), toy_cfg(), tmp_path / "run")
    cand = tmp_path / "run" / "tasks" / "01-b" / "lr1"
    saved = json.loads((cand / "metrics.json").read_text())  # run_training's metrics.json
    assert saved["method"] == "lora" and saved["steps"] == 6 and saved["lr"] == 0.02
    assert (cand / "config.yaml").is_file() and (cand / "logs" / "metrics.csv").is_file()
    assert not (cand / "checkpoints").exists()  # removed once the candidate is done
    record = json.loads((cand / "result.json").read_text())
    assert set(record) == {"lr", "val", "steps", "resumed_from_step", "train_seconds", "optimizer_state"}
    row = json.loads((tmp_path / "run" / "tasks" / "01-b" / "row.json").read_text())
    assert row["sweep"][1] == record and m["chosen_lr"][1] == row["chosen_lr"]
