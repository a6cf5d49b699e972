"""``ActivationCheckpointing``: the Lightning side of ``trainer.activation_checkpointing``.

At ``setup`` (before the optimizer and any resume) every backbone block of the
LightningModule is wrapped by ``lorakit.core.checkpointing.checkpoint_blocks``. A model
with no block that lorakit knows is one clear error rather than a silent no-op.
"""

from __future__ import annotations

import logging

import lightning as L

from lorakit.core.checkpointing import BLOCKS, checkpoint_blocks

log = logging.getLogger(__name__)


class ActivationCheckpointing(L.Callback):
    def __init__(self) -> None:
        self.blocks = 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.blocks = checkpoint_blocks(pl_module)
        if self.blocks == 0:
            raise ValueError(
                "trainer.activation_checkpointing: this model has none of the blocks lorakit "
                f"checkpoints ({sorted(b.rsplit('.', 1)[-1] for b in BLOCKS)}, ResNet stages); "
                "set it to false"
            )
        log.info("activation checkpointing: %d blocks", self.blocks)
