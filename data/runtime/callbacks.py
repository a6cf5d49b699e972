"""Lightning callbacks and the checkpoint writer shared by the pipelines' training loops."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lorakit.core import atomic_write, protocol

from .module import AdapterModule
from .sampler import item_seed, world


class AdapterHooks(L.Callback):
    """The training protocol (``lorakit.core.protocol``) inside every pipeline, in one place.

    - ``on_fit_start``: rank-changing methods need one process;
    - before each optimizer step: ``protocol.before_step`` (IncreLoRA's importance,
      GGPO's gradient norms);
    - once per *optimizer* step (not per micro-batch): ``protocol.after_step(model,
      optimizer)``: S2-LoRA's and SoRA's proximal steps, LARGO's radius, rank changes with
      the optimizer state of exactly the changed tensors rebuilt; then the module's own
      ``AdapterModule.after_optimizer_step()`` (an EMA teacher);
    - ``on_train_end``: ``protocol.finish`` (SoRA drops its zeroed ranks); for
      rank-changing methods the final ranks go to ``ranks.json`` and ``plots/ranks.png``
      of the run folder ``run`` (when given).

    Ranks of rank-changing methods need no extra checkpoint entry: their tensors' shapes
    carry them, and loading a checkpoint resizes each slot first (``RankedLoRA``). The
    callback's own state records them for reading. The LightningModule is an
    ``AdapterModule`` (its network is ``self.model``). Lightning runs callbacks before the
    module's hooks and the checkpoint callback last, so a checkpoint always holds the state
    after these hooks (which is why they are a callback, not the module's own hooks).
    """

    start_step = 0

    def __init__(self, run=None):
        self.run, self.final_ranks = run, {}

    @staticmethod
    def _model(pl_module) -> torch.nn.Module:
        if not isinstance(pl_module, AdapterModule):
            raise TypeError(
                f"lorakit's runtime trains an AdapterModule (lorakit.data.runtime), not a "
                f"{type(pl_module).__name__}"
            )
        return pl_module.model

    def on_fit_start(self, trainer, pl_module) -> None:
        model = self._model(pl_module)
        if trainer.world_size > 1 and protocol.rank_changing(model):
            names = sorted({m.name for m in protocol.rank_changing_methods(model)})
            raise ValueError(
                f"{'/'.join(names)} changes ranks during training, which needs one process "
                "(trainer.devices=1, trainer.nodes=1): resized tensors cannot be kept in step "
                "across processes"
            )

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_step = self._done = int(trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        protocol.before_step(self._model(pl_module), optimizer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self._done:  # a micro-batch inside gradient accumulation
            return
        self._done = int(trainer.global_step)
        opt = trainer.optimizers[0] if len(trainer.optimizers) == 1 else None
        protocol.after_step(self._model(pl_module), opt)
        pl_module.after_optimizer_step()

    def on_train_end(self, trainer, pl_module) -> None:
        model = self._model(pl_module)
        opt = trainer.optimizers[0] if len(trainer.optimizers) == 1 else None
        protocol.finish(model, opt)
        if not protocol.rank_changing(model):
            return
        self.final_ranks = protocol.ranks(model)
        if self.run is not None and trainer.is_global_zero:
            write_ranks(self.run, model, self.final_ranks)

    def state_dict(self) -> dict:
        return {"ranks": dict(self.final_ranks)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.final_ranks = dict(state_dict.get("ranks", {}))


def write_ranks(run, model, ranks: dict[str, int]) -> None:
    """``ranks.json`` and ``plots/ranks.png`` (layers x modules) in the run folder."""
    from lorakit.data.rank_plots import rank_heatmap  # lazily: matplotlib

    methods = sorted({m.name for m in protocol.rank_changing_methods(model)})
    text = json.dumps({"methods": methods, "ranks": ranks, "total": sum(ranks.values())}, indent=2)
    atomic_write(run.path / "ranks.json", lambda p: Path(p).write_text(text + "\n"))
    rank_heatmap(ranks, run.plots / "ranks.png", "/".join(methods))


class StepSeed(L.Callback):
    """Re-seeds torch, numpy and ``random`` at each micro-batch from ``(seed, position, rank)``.

    Model-side randomness (adapter dropout) then depends on the position only, never on
    how many draws happened before, so a resumed run draws what the uninterrupted run drew.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        accumulate = trainer.accumulate_grad_batches
        position = trainer.global_step * accumulate + batch_idx % accumulate
        rank, size = world()
        s = item_seed(self.seed + 7_919, position * size + rank)
        torch.manual_seed(s)
        np.random.seed(s % 2**32)
        random.seed(s)


class SamplerPosition(L.Callback):
    """Keeps the sampler's state in the checkpoint and restores its position on resume."""

    def __init__(self, sampler):
        self.sampler, self._trainer = sampler, None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict:
        t = self._trainer
        step = t.global_step if t is not None else 0
        accumulate = t.accumulate_grad_batches if t is not None else 1
        return self.sampler.data_state(step * accumulate)

    def load_state_dict(self, state_dict: dict) -> None:
        self.sampler.load_data_state(state_dict)


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


class StepProgressBar(TQDMProgressBar):
    """A bar over the run labelled "train" (a run is one pass of its sampler, so
    Lightning's "Epoch 0/-2" says nothing a user can act on)."""

    @property
    def train_description(self) -> str:
        return "train"

    def on_train_epoch_start(self, trainer, *args) -> None:
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.reset()
        self.train_progress_bar.total = convert_inf(self.total_train_batches)
        self.train_progress_bar.initial = 0
        self.train_progress_bar.set_description("train")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file, then renames it into place; loads with
    ``weights_only=True`` whatever the caller or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` asks.

    Before ``last.ckpt`` is replaced, the file it replaces is kept as ``previous.ckpt``
    (a hard link, renamed atomically): if the newest checkpoint is ever unreadable, the
    one before it is still there to resume from. A failed write (a full disk) is one
    ``ValueError`` line; the last good checkpoint stays and no temporary file is left.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        from lorakit.core.io import write_error

        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            if path.is_file():
                prev = path.with_name(
                    PREVIOUS if path.name == "last.ckpt" else f"previous-{path.name}"
                )
                link = path.with_name(f".{prev.name}.tmp")
                link.unlink(missing_ok=True)
                os.link(path, link)
                os.replace(link, prev)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            kept = f"the last good checkpoint {path}" if path.is_file() else "no checkpoint"
            raise write_error(path, e, kept) from None

    def load_checkpoint(self, path, *args, weights_only=None, **kwargs) -> dict:
        """Tensors and plain containers only: a pickled object in the file never runs."""
        return super().load_checkpoint(path, *args, weights_only=True, **kwargs)


PREVIOUS = "previous.ckpt"
