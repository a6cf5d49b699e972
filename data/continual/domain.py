"""What a domain gives the continual protocol (CLIP and Whisper implement it).

A domain object, built from its config section (and validated there, before any work):

    metric: str, higher_is_better: bool
    task_names: list[str]                      the sequence, in training order
    extra_names: list[str]                     scores tracked but not tasks (zero-shot retention)
    prepare(out)                               generate / read the data (after validation)
    build_model(seed) -> nn.Module             the pretrained start, the same for every call
    adapter_config(core_method, hyper)         a core config on the domain's target layers
    set_task(model, ids)                       point the model at tasks ``ids`` (CLIP: the head)
    batches(ids, steps, batch_size, seed)      ``(iterable, sampler)``: the training stream of
                                               tasks ``ids``; the sampler has ``data_state`` /
                                               ``load_data_state`` (runtime ``StepSampler``)
    loss(model, batch) -> scalar tensor
    evaluate(model, j, split) -> float         task ``j``'s score on ``val`` or ``test``
    extras(model) -> dict[str, float]          the extra scores (test only)
"""

from __future__ import annotations

from typing import Protocol


class Domain(Protocol):
    metric: str
    higher_is_better: bool
    task_names: list[str]
    extra_names: list[str]


def check_tasks(tasks, known: list[str]) -> list[str]:
    """The ``continual.tasks`` list, checked against the domain's ``known`` task names
    (a one-line ``ValueError``: too few, unknown, listed twice)."""
    if not isinstance(tasks, list) or len(tasks) < 2:
        raise ValueError(f"continual.tasks: list at least 2 tasks from {known}")
    bad = [t for t in tasks if t not in known]
    if bad:
        raise ValueError(f"continual.tasks: unknown task {bad[0]!r}; known: {known}")
    if len(set(tasks)) != len(tasks):
        raise ValueError("continual.tasks: a task is listed twice")
    return list(tasks)
