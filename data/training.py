"""Lightning callbacks and plugins shared by the pipelines' training loops."""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lorakit.core import after_optimizer_step


class AdapterHooks(L.Callback):
    """Runs the methods' post-step hooks (S2-LoRA proximal step, LARGO radius update).

    The LightningModule must expose the adapted network as ``self.model``; its
    ``training_step`` adds ``regularization_loss(self.model)`` to the loss.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        after_optimizer_step(pl_module.model)


class NonFiniteLoss(RuntimeError):
    pass


class NonFiniteGuard(L.Callback):
    """Stops training at a NaN/inf loss; the last good checkpoint stays on disk."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(
                f"loss became {float(loss)} at step {trainer.global_step}; training stopped. "
                "The last good checkpoint is kept in checkpoints/last.ckpt: lower the learning "
                "rate or use fp32 and resume."
            )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file, then renames it into place."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
