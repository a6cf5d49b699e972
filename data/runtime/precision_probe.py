"""What the first training forward pass of a fit actually ran in, written by every rank.

``PrecisionProbe`` hooks every ``nn.Linear`` of the LightningModule for the first training
micro-batch of a fit, then removes the hooks and writes ``logs/runtime_rank<r>.json`` in
the run folder:

    {"precision": "bf16-mixed",            # what the Trainer was built with
     "autocast_enabled": true,             # torch.is_autocast_enabled(device) inside forward
     "autocast_dtype": "bfloat16",         # torch.get_autocast_dtype(device) inside forward
     "linear_output_dtypes": ["bfloat16"], # dtypes the Linear layers returned
     "world_size": 2, "global_rank": 1, "device": "cpu"}

so a test can prove the requested precision was in effect (not merely accepted) and that
each of ``world_size`` processes trained. Cost: one set of hooks for one micro-batch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import torch


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class PrecisionProbe(L.Callback):
    """Records the autocast state and Linear output dtypes of the first training forward."""

    def __init__(self, root):
        self.root = Path(root)
        self._handles: list = []
        self._seen: dict | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._handles or self._seen is not None:
            return
        device = pl_module.device.type
        seen = {"autocast_enabled": False, "autocast_dtype": None, "linear_output_dtypes": set()}

        def hook(module, inputs, output) -> None:
            if torch.is_autocast_enabled(device):
                seen["autocast_enabled"] = True
                seen["autocast_dtype"] = _name(torch.get_autocast_dtype(device))
            if isinstance(output, torch.Tensor):
                seen["linear_output_dtypes"].add(_name(output.dtype))

        self._pending = seen
        self._handles = [
            m.register_forward_hook(hook)
            for m in pl_module.modules()
            if isinstance(m, torch.nn.Linear)
        ]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._handles:
            return
        for h in self._handles:
            h.remove()
        self._handles = []
        seen = self._pending
        self._seen = {
            "precision": str(trainer.precision),
            "autocast_enabled": seen["autocast_enabled"],
            "autocast_dtype": seen["autocast_dtype"],
            "linear_output_dtypes": sorted(seen["linear_output_dtypes"]),
            "world_size": int(trainer.world_size),
            "global_rank": int(trainer.global_rank),
            "device": pl_module.device.type,
        }
        path = self.root / "logs" / f"runtime_rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")  # atomic: a kill leaves the old file or none
        tmp.write_text(json.dumps(self._seen, indent=2) + "\n")
        os.replace(tmp, path)
