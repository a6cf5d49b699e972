"""Kept for existing imports: the callbacks now live in ``lorakit.data.runtime``."""

from __future__ import annotations

from .runtime.callbacks import (  # noqa: F401
    AdapterHooks,
    AtomicCheckpointIO,
    NonFiniteGuard,
    NonFiniteLoss,
    StepSeed,
)
