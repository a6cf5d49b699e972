"""``PrepareMethods``: the training protocol's ``prepare`` step inside every pipeline.

Methods that initialise from gradients (LoRA-SB: ``needs_prepare``) get
``lorakit.core.protocol.prepare`` once, at the start of a *fresh* run: a few batches of the
train loader (moved to the device) and a loss that is the LightningModule's own
``training_step``. A resumed run (``global_step > 0``) never prepares again: its factors
are buffers restored from the checkpoint.

Nothing the training reads is disturbed, so a resumed run still ends where an
uninterrupted run ends: a fresh iterator of the loader is used (``StepSampler`` restarts
at its stored position, which iterating does not change), the passes run under a fixed
seed with torch / numpy / ``random`` states restored afterwards (``seeded``; ``StepSeed``
re-seeds every micro-batch anyway), each module's train/eval mode is put back, gradients
are dropped, and the passes' ``self.log`` calls are not recorded.
"""

from __future__ import annotations

import contextlib
from itertools import islice

import lightning as L
from lightning.pytorch.utilities import move_data_to_device

from lorakit.core import protocol

from .sampler import item_seed, seeded


class PrepareMethods(L.Callback):
    """Runs ``protocol.prepare`` on ``pl_module.model`` before the first optimizer step.

    ``batches``: how many train micro-batches to use. ``prepared``: batches used by this
    fit (0 when nothing needed it or the run resumed).
    """

    def __init__(self, seed: int, batches: int = 4):
        self.seed, self.batches, self.prepared = int(seed), int(batches), 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.prepared = 0
        model = pl_module.model  # an AdapterModule (AdapterHooks checks it)
        if trainer.global_step != 0 or not protocol.needs_prepare(model):
            return
        loader = trainer.train_dataloader
        batches = (move_data_to_device(b, pl_module.device) for b in islice(loader, self.batches))
        modes = {m: m.training for m in pl_module.modules()}
        ddp = getattr(trainer.strategy.model, "no_sync", None)  # prepare averages by itself
        log, log_dict = pl_module.__dict__.get("log"), pl_module.__dict__.get("log_dict")
        pl_module.log = pl_module.log_dict = _no_log
        try:
            with seeded(item_seed(self.seed + 104_729, 0)), (ddp or contextlib.nullcontext)():
                with trainer.precision_plugin.train_step_context():
                    self.prepared = protocol.prepare(model, batches, _loss(pl_module))
        finally:
            _put_back(pl_module, "log", log)
            _put_back(pl_module, "log_dict", log_dict)
            for m, training in modes.items():
                m.training = training


def _no_log(*args, **kwargs) -> None:
    return None


def _put_back(obj, name: str, value) -> None:
    if value is None:
        obj.__dict__.pop(name, None)
    else:
        obj.__dict__[name] = value


def _loss(pl_module):
    def loss_fn(model, batch):
        out = pl_module.training_step(batch, 0)
        return out["loss"] if isinstance(out, dict) else out

    return loss_fn
