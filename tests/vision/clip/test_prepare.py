"""LoRA-SB's prepare step runs inside the pipeline on a fresh run, never on a resumed one."""

import lightning as L
import pytest
import torch

from lorakit.core import methods
from lorakit.data.runtime import PrepareMethods
from lorakit.vision.clip import pipeline


class _Probe(L.Callback):
    """Factors before (fit start) and after (train start) the prepare step, and the number
    of batches ``PrepareMethods`` used; crashes at ``crash_at`` when given."""

    def __init__(self, crash_at=None):
        self.crash_at, self.before, self.after, self.prepared = crash_at, None, None, None

    @staticmethod
    def _factors(pl_module):
        return [m.B.clone() for m in methods(pl_module.model)]

    def on_fit_start(self, trainer, pl_module):
        self.before = self._factors(pl_module)

    def on_train_start(self, trainer, pl_module):  # runs after PrepareMethods' hook
        self.after = self._factors(pl_module)
        (cb,) = [c for c in trainer.callbacks if isinstance(c, PrepareMethods)]
        self.prepared = cb.prepared

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == self.crash_at:
            raise RuntimeError("simulated crash")


def test_lora_sb_is_prepared_once_and_resume_is_exact(run_cfg, tmp_path):
    cfg = run_cfg("adapter.method=lora_sb", "trainer.max_steps=40",
                  "trainer.checkpoint_every=20")  # fmt: skip
    probe = _Probe()
    full = pipeline.train(cfg, tmp_path / "full", callbacks=[probe])
    assert probe.prepared == 4  # four train batches
    assert probe.before and all(
        not torch.allclose(b, a) for b, a in zip(probe.before, probe.after, strict=True)
    ), "the factors are still the random init: prepare did not run"

    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.train(cfg, tmp_path / "cut", callbacks=[_Probe(crash_at=23)])
    again = _Probe()
    resumed = pipeline.train(cfg, tmp_path / "cut", callbacks=[again])
    assert resumed["resumed_from_step"] == 20 and again.prepared == 0  # not prepared twice
    drop = ("resumed_from_step",)
    assert {k: v for k, v in resumed.items() if k not in drop} == {
        k: v for k, v in full.items() if k not in drop
    }
