"""Continual adaptation: a sequence of tasks, every earlier task evaluated after each one.

    scores.py     the task-by-task matrix: average final score, backward/forward transfer
    baselines.py  GORP and the baselines (sequential LoRA, merged LoRA, O-LoRA, full, joint)
    module.py     the Lightning module training one task (any domain)
    task_run.py   ``TaskRun``: one task with one lr as a pipeline of the shared runtime
                  (``run_training``: run folder, Trainer, exact resume, metrics.json)
    state.py      the model a task starts from (replayed structure + saved tensors)
    loop.py       ``run_sequence``: the task loop, the lr sweep on validation, resume
    options.py    the shared config sections, checked before any work
    plots.py      heatmap of the matrix, per-task curves
    domain.py     what a domain (CLIP, Whisper) provides

Domain-agnostic: nothing here imports ``lorakit.vision`` or ``lorakit.speech``.
"""

from .baselines import METHODS, Method
from .loop import run_sequence
from .scores import average_final, backward_transfer, forward_transfer, summary

__all__ = [
    "METHODS",
    "Method",
    "average_final",
    "backward_transfer",
    "forward_transfer",
    "run_sequence",
    "summary",
]
