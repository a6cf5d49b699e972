"""Continual adaptation: a sequence of tasks, every earlier task evaluated after each one.

    scores.py     the task-by-task matrix: average final score, backward/forward transfer
    baselines.py  GORP and the baselines (sequential LoRA, merged LoRA, O-LoRA, full, joint)
    module.py     the Lightning module training one task (any domain)
    task_run.py   ``TaskRun``: one task with one lr as a pipeline of the shared runtime
                  (``run_training``: run folder, Trainer, exact resume, metrics.json)
    state.py      the model a task starts from (replayed structure + saved tensors)
    loop.py       ``run_sequence``: the task loop, the lr sweep on validation, resume
    options.py    the shared config sections, checked before any work
    names.py      the continual methods and their adapter keys (no torch: the CLI's check)
    plots.py      heatmap of the matrix, per-task curves
    domain.py     what a domain (CLIP, Whisper) provides

Domain-agnostic: nothing here imports ``lorakit.vision`` or ``lorakit.speech``.
"""

# Names -> the submodule defining them, imported on first use (PEP 562): the light
# ``names`` and ``options`` modules are read by the CLI's config check without torch.
_HOMES = {
    "METHODS": "names",
    "Method": "baselines",
    "run_sequence": "loop",
    "average_final": "scores",
    "backward_transfer": "scores",
    "forward_transfer": "scores",
    "summary": "scores",
}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "METHODS",
    "Method",
    "average_final",
    "backward_transfer",
    "forward_transfer",
    "run_sequence",
    "summary",
]
