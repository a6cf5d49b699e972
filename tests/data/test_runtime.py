"""The shared training runtime: resumable sampler, per-item seeds, once-per-optimizer-step
hooks, continued CSV logs, checked checkpoints and trainer-option validation."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lorakit.data.runs import RunFolder
from lorakit.data.runtime import (
    AdapterModule,
    SeededItems,
    StepSampler,
    build_trainer,
    resumed_from_step,
    trainer_options,
)
from lorakit.data.runtime.callbacks import AtomicCheckpointIO
from lorakit.data.runtime.trainer import checkpoint_step


def test_step_sampler_is_a_function_of_position():
    s = StepSampler(n=10, batch_size=4, total=7, seed=3)
    full = list(s)
    assert len(full) == len(s) == 7 and all(len(b) == 4 for b in full)
    # one pass over the data covers every index once (positions 0..9)
    first_pass = [i for b in full for i, _ in b][:10]
    assert sorted(first_pass) == list(range(10))
    # resuming at micro-batch 3 yields exactly the rest of the uninterrupted stream
    s.position = 3
    assert list(s) == full[3:]
    # every item carries its own seed; a different run seed changes order and seeds
    assert len({seed for b in full for _, seed in b}) == 28
    assert list(StepSampler(10, 4, 7, seed=4)) != full


def test_step_sampler_state_refuses_a_changed_config():
    s = StepSampler(n=10, batch_size=4, total=7, seed=3)
    state = s.data_state(position=5)
    other = StepSampler(n=10, batch_size=4, total=7, seed=3)
    other.load_data_state(state)
    assert other.position == 5
    with pytest.raises(ValueError, match="batch_size=4"):
        StepSampler(n=10, batch_size=2, total=7, seed=3).load_data_state(state)


class _Noisy(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return torch.rand(()) + i


def test_seeded_items_draw_by_seed_not_by_history():
    items = SeededItems(_Noisy())
    a = items[(2, 17)]
    torch.rand(100)  # whatever happened before does not matter
    assert torch.equal(items[(2, 17)], a) and not torch.equal(items[(2, 18)], a)
    state = torch.get_rng_state()
    items[(1, 5)]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone


class _Counting(AdapterModule):
    """One linear layer; counts the runtime's once-per-optimizer-step hook."""

    def __init__(self):
        torch.manual_seed(0)
        super().__init__(nn.Linear(3, 1), lr=0.1)
        self.calls = []

    def task_loss(self, batch, batch_idx):
        return self.model(batch).pow(2).mean()

    def after_optimizer_step(self):
        self.calls.append(self.trainer.global_step)


class _Rows(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.full((3,), float(i))


def _fit(tmp_path, module, **opts):
    opts = trainer_options({"max_steps": 3, "progress": False, "accelerator": "cpu", **opts})
    sampler = StepSampler(8, 2, opts.max_steps * opts.accumulate, 0)
    loader = DataLoader(SeededItems(_Rows()), batch_sampler=sampler)
    trainer, ckpt = build_trainer(opts, RunFolder(tmp_path), sampler=sampler)
    trainer.fit(module, loader, ckpt_path=ckpt)
    return trainer


def test_hooks_run_once_per_optimizer_step_under_accumulation(tmp_path):
    module = _Counting()
    trainer = _fit(tmp_path, module, accumulate=4, log_every=1)
    assert trainer.global_step == 3
    assert module.calls == [1, 2, 3]  # not 12 calls (one per micro-batch)


def test_log_is_continued_and_resume_step_recorded(tmp_path):
    _fit(tmp_path, _Counting(), max_steps=4, checkpoint_every=2, log_every=1)
    module = _Counting()
    trainer = _fit(tmp_path, module, max_steps=6, checkpoint_every=2, log_every=1)
    assert resumed_from_step(trainer) == 4 and module.calls == [5, 6]
    with (tmp_path / "logs" / "metrics.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [0, 1, 2, 3, 4, 5]  # the first part's rows survive the resume


def test_truncated_checkpoint_is_one_line_naming_the_way_back(tmp_path):
    _fit(tmp_path, _Counting(), max_steps=4, checkpoint_every=1)
    last = tmp_path / "checkpoints" / "last.ckpt"
    previous = tmp_path / "checkpoints" / "previous.ckpt"
    assert checkpoint_step(previous) == 3 and checkpoint_step(last) == 4
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(ValueError) as err:
        _fit(tmp_path, _Counting(), max_steps=6)
    msg = str(err.value)
    assert "\n" not in msg and str(last) in msg and f"mv {previous} {last}" in msg
    previous.replace(last)
    trainer = _fit(tmp_path, _Counting(), max_steps=6)
    assert resumed_from_step(trainer) == 3 and trainer.global_step == 6


def test_checkpoint_writes_are_atomic(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "c" / "last.ckpt"
    io.save_checkpoint({"global_step": 1}, path)
    io.save_checkpoint({"global_step": 2}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt", "previous.ckpt"]
    assert torch.load(path)["global_step"] == 2
    assert torch.load(path.parent / "previous.ckpt")["global_step"] == 1


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"precision": "fp8"}, "trainer.precision 'fp8' is unknown"),
        ({"accelerator": "tpu9"}, "trainer.accelerator 'tpu9' is unknown"),
        ({"devices": 0}, "trainer.devices must be a positive integer"),
        ({"strategy": "bogus"}, "trainer.strategy 'bogus' is unknown"),
        ({"max_steps": "many"}, "trainer.max_steps must be an integer"),
        ({"accumulate": 0}, "trainer.accumulate must be >= 1"),
        ({"bogus": 1}, r"trainer: unknown key\(s\) \['bogus'\]"),
    ],
)
def test_bad_trainer_options_are_one_line(section, message):
    with pytest.raises(ValueError, match=message) as err:
        trainer_options(section)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without GPU")
def test_gpu_options_without_a_gpu_are_one_line():
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        trainer_options({"accelerator": "gpu"})
    with pytest.raises(ValueError, match="16-mixed needs a GPU"):
        trainer_options({"precision": "16-mixed", "accelerator": "cpu"})
    assert trainer_options({"precision": "bf16"}).precision == "bf16-mixed"


class _KilledAfterCheckpoint(_Counting):
    """Dies right after the step-4 checkpoint is written and before Lightning logs the row
    of that step (the module's hook runs after the checkpoint callback, before logging)."""

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.trainer.global_step == 4:
            raise RuntimeError("killed")


def test_row_logged_after_the_checkpoint_survives_a_kill(tmp_path):
    with pytest.raises(RuntimeError, match="killed"):
        _fit(tmp_path, _KilledAfterCheckpoint(), max_steps=6, checkpoint_every=2, log_every=1)
    with (tmp_path / "logs" / "metrics.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [0, 1, 2]  # row 3 never written
    _fit(tmp_path, _Counting(), max_steps=6, checkpoint_every=2, log_every=1)
    with (tmp_path / "logs" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4, 5]
    reference = tmp_path / "reference"
    _fit(reference, _Counting(), max_steps=6, checkpoint_every=2, log_every=1)
    assert (tmp_path / "logs" / "metrics.csv").read_text() == (
        reference / "logs" / "metrics.csv"
    ).read_text()
