"""The sections of a continual config that every domain shares, checked before any work.

    continual: {domain: clip | whisper, tasks: [names], method: gorp | lora | ...}
    adapter:   LoRA hyper-parameters (r, alpha, dropout, ...) and the method's own
               (gorp: r_g, T, energy_cl, merge_lora_per_task; olora: lambda_orth)
    optim:     lr (a number, or a list: swept per task, chosen on the validation split),
               task_lr (a fixed lr per task, e.g. what a sweep chose), weight_decay,
               warmup_steps, batch_size
    trainer:   the runtime's options; max_steps is the budget *per task*
"""

from __future__ import annotations

from .names import check_method

CONTINUAL_KEYS = ("domain", "tasks", "method")
OPTIM_KEYS = ("lr", "task_lr", "weight_decay", "warmup_steps", "batch_size")


def _number(value, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number, got {value!r}") from None
    if not out > 0:
        raise ValueError(f"{where} must be positive, got {value!r}")
    return out


def check_config(cfg: dict, domain) -> dict:
    """Validate the shared sections (the domain checked its own on construction); returns
    the ``continual`` section. One-line ``ValueError`` naming what is wrong."""
    section = cfg.get("continual") or {}
    unknown = sorted(set(section) - set(CONTINUAL_KEYS))
    if unknown:
        raise ValueError(f"continual: unknown key(s) {unknown}; valid: {list(CONTINUAL_KEYS)}")
    check_method(section.get("method"))
    optim = cfg.get("optim") or {}
    unknown = sorted(set(optim) - set(OPTIM_KEYS))
    if unknown:
        raise ValueError(f"optim: unknown key(s) {unknown}; valid: {list(OPTIM_KEYS)}")
    n_rows = len(domain.task_names) if section["method"] != "joint" else 1
    for i in range(n_rows):
        learning_rates(cfg, i)
    if int(optim.get("batch_size", 0)) < 1:
        raise ValueError(f"optim.batch_size must be a positive integer, got {optim.get('batch_size')!r}")
    if float(optim.get("weight_decay", 0.0)) < 0:
        raise ValueError("optim.weight_decay must be >= 0")
    return section


def learning_rates(cfg: dict, task: int) -> list[float]:
    """The candidates for task ``task``: ``optim.task_lr[task]`` when given, else ``optim.lr``
    (one number, or a list swept on the validation split)."""
    optim = cfg.get("optim") or {}
    fixed = optim.get("task_lr")
    if fixed is not None:
        if not isinstance(fixed, list) or task >= len(fixed):
            raise ValueError(f"optim.task_lr must list one lr per trained task, got {fixed!r}")
        return [_number(fixed[task], f"optim.task_lr[{task}]")]
    lr = optim.get("lr")
    lrs = lr if isinstance(lr, list) else [lr]
    if not lrs:
        raise ValueError("optim.lr: give a number or a non-empty list")
    return [_number(v, "optim.lr") for v in lrs]
