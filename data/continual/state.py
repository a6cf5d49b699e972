"""The model a continual task starts from, and the state files between tasks.

Every task starts from a fresh model with the structure of the earlier tasks replayed
(``begin_task`` for ``0..t``, each seeded by ``(seed, task)``) and the saved tensors loaded:
a state file (``tasks/.../lr<k>/state.pt``, ``state/after-<i>.pt``) holds only what training
changed, so it stays small for a Whisper-sized model, and it is read with
``weights_only=True`` (tensors and plain containers, never code).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lorakit.data.runtime.trainer import safe_load


def seed_task(seed: int, t: int, what: int = 0) -> None:
    """Seed torch by ``(seed, task, what)``: the same draws in a resumed run."""
    torch.manual_seed(seed * 1_000_003 + 1_009 * t + what)


def save_state(path: Path, obj) -> None:
    """``torch.save`` to a temporary file, then rename (a kill leaves the old file or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict:
    """A saved model state (``state.pt``, ``state/after-<i>.pt``), read with
    ``weights_only=True``: tensors and plain containers, never code; one-line ValueError."""
    saved = safe_load(path, "continual state file")
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        raise ValueError(f"continual state file {path} holds no model state ('model' is missing)")
    return saved


def build_model(domain, method, t: int, state: Path | None, seed: int):
    """The model at the start of task ``t``: fresh, the structure of tasks ``< t`` replayed,
    the saved tensors loaded, then task ``t`` set up (seeded). Returns ``(model, carried)``."""
    model = domain.build_model(seed)
    for s in range(t):
        seed_task(seed, s)
        method.begin_task(model, s)
    carried = None
    if state is not None:
        saved = load_state(state)
        load_changed(model, saved["model"])
        carried = saved.get("carried")
    seed_task(seed, t)
    method.begin_task(model, t)
    return model, carried


def changed_tensors(model, reference) -> dict:
    """The entries of ``model``'s state that differ from ``reference`` (the same structure,
    freshly built): what training changed. Saving only these keeps a Whisper-sized state
    file small; loading them into a fresh replay gives the model back exactly."""
    ref = reference.state_dict()
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if k not in ref or not torch.equal(v, ref[k])}  # fmt: skip


def load_changed(model, changed: dict) -> None:
    extra = sorted(set(changed) - set(model.state_dict()))
    if extra:
        raise ValueError(f"saved continual state does not fit the model: {extra[:3]}")
    model.load_state_dict(changed, strict=False)
