"""The Lightning module that trains one task of a continual run, for any domain.

The domain gives the loss (``loss_fn(model, batch) -> scalar``) and the batches; the
continual ``Method`` gives the optimizer (GORP's through ``protocol.method_optimizer``),
an extra penalty (O-LoRA) and what trains. The shared runtime (``run_training`` with the
``TaskRun`` hooks) runs it,
so each task's training is checkpointed and resumes exactly: checkpoints hold the tensors
that train (adapter, or full weights for GORP / full fine-tuning) and the optimizer state
(the ``AdapterModule`` rule); everything else is the start-of-task model the loop rebuilds
from disk.
"""

from __future__ import annotations

import time

import torch

from lorakit.data.runtime import AdapterModule, Schedule

from .baselines import Method, optimizer_state_numel


class TaskModule(AdapterModule):
    """Trains ``model`` (kept as ``self.model``) with the continual method's optimizer and
    a linear warm-up to a constant lr (the runtime's ``AdapterModule``)."""

    def __init__(self, model, loss_fn, method: Method, batches, optim: dict, carried=None):
        warmup = max(1, int(optim.get("warmup_steps", 0)))
        lr, weight_decay = float(optim["lr"]), float(optim.get("weight_decay", 0.0))
        super().__init__(model, lr, weight_decay, schedule=Schedule(1, warmup, "constant"))
        self.loss_fn, self.method, self.batches = loss_fn, method, batches
        self.carried = carried
        self.memory: dict = {}
        self.seconds = 0.0

    def train_dataloader(self):
        return self.batches

    def on_train_start(self) -> None:
        self.model.train()
        self._t0 = time.perf_counter()

    def on_train_end(self) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.memory = optimizer_state_numel(self.trainer.optimizers[0])

    def batch_size(self, batch) -> int:
        return len(batch[1]) if isinstance(batch, (tuple, list)) else len(batch["ids"])

    def task_loss(self, batch, batch_idx):
        loss = self.loss_fn(self.model, batch)
        penalty = self.method.penalty(self.model)
        if torch.is_tensor(penalty):
            self.log("train_penalty", penalty, batch_size=self.batch_size(batch))
        return loss + penalty

    def build_optimizer(self):
        """The method's (GORP's projected Adam with the task basis carried over, or AdamW)."""
        return self.method.optimizer(self.model, self.lr, self.weight_decay, self.carried)
