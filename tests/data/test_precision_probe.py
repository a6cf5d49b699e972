"""The runtime records the precision a forward pass actually ran in (``PrecisionProbe``):
bf16-mixed shows a bf16 autocast and bf16 Linear outputs, 32-true shows neither."""

from __future__ import annotations

import json

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
    trainer_options,
)


class _Tiny(AdapterModule):
    def __init__(self):
        torch.manual_seed(0)
        super().__init__(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)), lr=0.1)

    def task_loss(self, batch, batch_idx):
        return self.model(batch).float().pow(2).mean()


class _Rows(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.full((3,), float(i))


def _fit(tmp_path, precision: str) -> tuple[dict, _Tiny]:
    opts = trainer_options(
        {"max_steps": 2, "progress": False, "accelerator": "cpu", "precision": precision}
    )
    sampler = StepSampler(8, 2, opts.max_steps, 0)
    loader = DataLoader(SeededItems(_Rows()), batch_sampler=sampler)
    trainer, ckpt = build_trainer(opts, RunFolder(tmp_path), sampler=sampler)
    module = _Tiny()
    trainer.fit(module, loader, ckpt_path=ckpt)
    return json.loads((tmp_path / "logs" / "runtime_rank0.json").read_text()), module


@pytest.mark.parametrize(
    ("precision", "autocast", "outputs"),
    [("bf16-mixed", "bfloat16", ["bfloat16"]), ("32-true", None, ["float32"])],
)
def test_the_forward_pass_records_its_precision(tmp_path, precision, autocast, outputs):
    seen, module = _fit(tmp_path, precision)
    assert seen == {
        "precision": precision,
        "autocast_enabled": autocast is not None,
        "autocast_dtype": autocast,
        "linear_output_dtypes": outputs,
        "world_size": 1,
        "global_rank": 0,
        "device": "cpu",
    }
    # mixed precision keeps the trained weights in fp32
    assert {p.dtype for p in module.parameters()} == {torch.float32}
