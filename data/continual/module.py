"""The Lightning module that trains one task of a continual run, for any domain.

The domain gives the loss (``loss_fn(model, batch) -> scalar``) and the batches; the
continual ``Method`` gives the optimizer (GORP's through ``protocol.method_optimizer``),
an extra penalty (O-LoRA) and what trains. The shared runtime (``build_trainer``) runs it,
so each task's training is checkpointed and resumes exactly: checkpoints hold the tensors
that train (adapter, or full weights for GORP / full fine-tuning) and the optimizer state;
everything else is the start-of-task model the loop rebuilds from disk.
"""

from __future__ import annotations

import time

import lightning as L
import torch

from lorakit.core import regularization_loss

from .baselines import Method, optimizer_state_numel


class TaskModule(L.LightningModule):
    """Trains ``model`` (kept as ``self.model``, as the runtime's ``AdapterHooks`` expects)."""

    def __init__(self, model, loss_fn, method: Method, batches, optim: dict, carried=None):
        super().__init__()
        self.model, self.loss_fn, self.method, self.batches = model, loss_fn, method, batches
        self.lr, self.weight_decay = float(optim["lr"]), float(optim.get("weight_decay", 0.0))
        self.warmup = int(optim.get("warmup_steps", 0))
        self.carried = carried
        self.memory: dict = {}
        self.strict_loading = False
        self.seconds = 0.0

    def train_dataloader(self):
        return self.batches

    def on_train_start(self) -> None:
        self.model.train()
        self._t0 = time.perf_counter()

    def on_train_end(self) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.memory = optimizer_state_numel(self.trainer.optimizers[0])

    def training_step(self, batch, batch_idx):
        loss = self.loss_fn(self.model, batch)
        penalty = self.method.penalty(self.model)
        total = loss + regularization_loss(self.model) + penalty
        n = len(batch[1]) if isinstance(batch, (tuple, list)) else len(batch["ids"])
        self.log("train_loss", loss, prog_bar=True, batch_size=n)
        if torch.is_tensor(penalty):
            self.log("train_penalty", penalty, batch_size=n)
        return total

    def configure_optimizers(self):
        opt = self.method.optimizer(self.model, self.lr, self.weight_decay, self.carried)
        warm = max(1, self.warmup)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def state_dict(self, *args, **kwargs):
        # checkpoints hold what trains; the rest is the start-of-task model saved on disk
        full = super().state_dict(*args, **kwargs)
        keep = {n for n, p in self.named_parameters() if p.requires_grad}
        keep |= {n for n, _ in self.named_buffers() if ".adapters." in n}
        return type(full)((k, v) for k, v in full.items() if k in keep)
