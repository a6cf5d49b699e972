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

from lorakit.data.lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _HOMES)


__all__ = [
    "METHODS",
    "Method",
    "average_final",
    "backward_transfer",
    "forward_transfer",
    "run_sequence",
    "summary",
]
