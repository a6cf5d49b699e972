"""``build_trainer``: the Lightning Trainer every pipeline shares, and the resume point.

A run resumes from ``checkpoints/last.ckpt`` when it exists (``trainer.resume``). The file
is opened first, with ``weights_only=True`` (tensors, dicts, lists, numbers and strings: no
pickled object can run code; Lightning's own load is pinned the same way in
``AtomicCheckpointIO``): a truncated or corrupt checkpoint is one clear error that says how
to go back to ``checkpoints/previous.ckpt``, a checkpoint holding other pickled objects is
refused unopened, never a traceback from inside ``torch.load``.
"""

from __future__ import annotations

import logging
import pickle
import re
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
from .checkpointing import ActivationCheckpointing
from .fsdp import AdapterFSDP
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
    r".*The dirpath has changed from.*",  # a run folder copied or moved: nothing is lost
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


class UnsafeFile(ValueError):
    """A torch file holding pickled objects other than tensors and plain containers."""


def safe_load(path: Path, what: str = "file"):
    """``torch.load(path, weights_only=True)`` on the CPU: nothing in the file can run code.
    A file holding other pickled objects is an ``UnsafeFile`` naming them; a truncated or
    corrupt one a ``ValueError``; both one line naming ``path``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise ValueError(f"{what} {path} is unreadable (corrupt: {_reason(e)})") from None
        names = sorted(set(re.findall(r"GLOBAL (\S+) was not an allowed global", str(e))))
        raise UnsafeFile(
            f"{what} {path} holds pickled objects other than tensors ({', '.join(names) or '?'})"
            ", which could run code; lorakit loads tensors only and did not run them"
        ) from None
    except Exception as e:  # noqa: BLE001 - any other failure to read it means the same
        raise ValueError(f"{what} {path} is unreadable (truncated or corrupt: {_reason(e)})") from None


def _reason(e: Exception) -> str:
    return str(e).splitlines()[0][:120] if str(e) else type(e).__name__


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was taken at; an unreadable or unsafe file is a
    one-line ValueError (the hint to use ``previous.ckpt`` only when that one is readable)."""
    try:
        ckpt = safe_load(path, "checkpoint")
    except UnsafeFile as e:
        raise ValueError(f"{e}; do not trust this run folder ({_START_OVER})") from None
    except ValueError as e:
        raise ValueError(f"{e}; {_hint(path)}") from None
    try:
        step = int(ckpt["global_step"])
        ckpt["state_dict"], ckpt["loops"]  # noqa: B018 - a Lightning checkpoint has both
    except (KeyError, TypeError, ValueError, IndexError):
        raise ValueError(
            f"checkpoint {path} is not a Lightning checkpoint (no global_step, state_dict and "
            f"loops); {_hint(path)}"
        ) from None
    return step


_START_OVER = "--set trainer.resume=false starts the run over"


def _hint(path: Path) -> str:
    """Go back to ``previous.ckpt`` when it is a readable checkpoint, else start over."""
    previous = path.parent / PREVIOUS
    try:
        ckpt = safe_load(previous, "checkpoint") if previous.is_file() else None
    except ValueError:
        ckpt = None
    if isinstance(ckpt, dict) and {"global_step", "state_dict", "loops"} <= set(ckpt):
        return (
            f"to resume from the checkpoint before it, run `mv {previous} {path}` and the "
            "same command again"
        )
    return _START_OVER


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
    if opts.activation_checkpointing:
        extra.append(ActivationCheckpointing())
    hooks = AdapterHooks(run)
    # a run resumed from a checkpoint at max_steps trains no step (Lightning then skips
    # on_train_start), yet it did resume: metrics.json's resumed_from_step says so
    hooks.start_step = resume_step
    try:
        trainer = L.Trainer(
            max_steps=opts.max_steps,
            max_epochs=-1,
            devices=opts.devices,
            num_nodes=opts.nodes,
            strategy=AdapterFSDP() if opts.strategy == "fsdp" else opts.strategy,
            accelerator=opts.accelerator,
            precision=opts.precision,
            accumulate_grad_batches=opts.accumulate,
            logger=ContinuedCSVLogger(run.path, keep_before=resume_step),
            callbacks=[PrepareMethods(opts.seed), hooks, StepSeed(opts.seed)]
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
