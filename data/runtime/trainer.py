"""``build_trainer``: the Lightning Trainer every pipeline shares, and the resume point.

A run resumes from ``checkpoints/last.ckpt`` when it exists (``trainer.resume``). The file
is opened first: a truncated or corrupt checkpoint is one clear error that says how to go
back to ``checkpoints/previous.ckpt``, never a traceback from inside ``torch.load``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from .callbacks import (
    PREVIOUS,
    AdapterHooks,
    AtomicCheckpointIO,
    NonFiniteGuard,
    SamplerPosition,
    StepProgressBar,
    StepSeed,
)
from .logs import ContinuedCSVLogger, LogTail
from .options import TrainerOptions
from .precision_probe import PrecisionProbe
from .prepare import PrepareMethods

# Lightning messages a user cannot act on (frozen backbones are in eval mode on purpose;
# the litlogger advertisement; a torch deprecation inside Lightning; our loaders resume
# through StepSampler, which Lightning's mid-epoch check does not know about).
_QUIET = (
    r".*module\(s\) in eval mode.*",
    r".*LeafSpec.*",
    r".*resuming from a checkpoint that ended before the epoch ended.*",
    r".*does not have many workers.*",
    r".*Checkpoint directory .* exists and is not empty.*",
)


class _DropTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


def quiet_lightning() -> None:
    for pattern in _QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning_utilities.core.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropTip) for f in log.filters):
            log.addFilter(_DropTip())


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was taken at; an unreadable file is a ValueError."""
    run = path.parent.parent
    hint = (
        f"to resume from the checkpoint before it, run `mv {path.parent / PREVIOUS} {path}` "
        "and the same command again"
        if (path.parent / PREVIOUS).is_file()
        else f"delete {path.parent} to start the run {run} over"
    )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        step = int(ckpt["global_step"])
        ckpt["state_dict"], ckpt["loops"]  # noqa: B018 - a Lightning checkpoint has both
    except Exception as e:  # noqa: BLE001 - any failure to read it means the same to a user
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ValueError(
            f"checkpoint {path} is unreadable (truncated or corrupt: {reason}); {hint}"
        ) from None
    return step


def build_trainer(
    opts: TrainerOptions, run, callbacks: list | None = None, sampler=None
):
    """A Lightning Trainer writing into the run folder ``run``; returns ``(trainer, ckpt)``.

    ``ckpt`` is the checkpoint to resume from (or None). ``sampler`` (a ``StepSampler``)
    gets its position stored in and restored from checkpoints.
    """
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import ModelCheckpoint

    quiet_lightning()
    last = run.last_checkpoint if opts.resume else None
    resume_step = checkpoint_step(last) if last else 0
    L.seed_everything(opts.seed, workers=True, verbose=False)
    ckpt = ModelCheckpoint(
        dirpath=run.checkpoints,
        save_last=True,
        save_top_k=0,
        every_n_train_steps=max(1, opts.checkpoint_every),
        enable_version_counter=False,
    )
    extra = [LogTail()] + ([SamplerPosition(sampler)] if sampler is not None else [])
    extra.append(PrecisionProbe(run.path))  # logs/runtime_rank<r>.json: precision in effect
    if opts.progress:
        extra.append(StepProgressBar())
    try:
        trainer = L.Trainer(
            max_steps=opts.max_steps,
            max_epochs=-1,
            devices=opts.devices,
            num_nodes=opts.nodes,
            strategy=opts.strategy,
            accelerator=opts.accelerator,
            precision=opts.precision,
            accumulate_grad_batches=opts.accumulate,
            logger=ContinuedCSVLogger(run.path, keep_before=resume_step),
            callbacks=[PrepareMethods(opts.seed), AdapterHooks(run), StepSeed(opts.seed)]
            + [NonFiniteGuard(), ckpt, *extra]
            + list(callbacks or []),
            plugins=[AtomicCheckpointIO()],
            log_every_n_steps=max(1, opts.log_every),
            enable_progress_bar=opts.progress,
            enable_model_summary=False,
            gradient_clip_val=opts.grad_clip,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            use_distributed_sampler=False,  # StepSampler splits each global batch by rank
            default_root_dir=run.path,
        )
    except (MisconfigurationException, ValueError, RuntimeError) as e:
        raise ValueError(f"trainer: {str(e).splitlines()[0]}") from None
    return trainer, (str(last) if last else None)


def resumed_from_step(trainer) -> int:
    """The optimizer step the last ``fit`` started from (0 for a fresh run)."""
    for cb in trainer.callbacks:
        if isinstance(cb, AdapterHooks):
            return int(cb.start_step)
    return 0
