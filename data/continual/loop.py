"""The continual protocol: train a sequence of tasks, evaluate every task after each one.

    metrics = run_sequence(domain, cfg, out)

``domain`` (a ``Domain``, see ``domain.py``) knows the tasks, the model, the loss and the
scores; this module knows the order of things, the learning-rate sweep and resuming.
Per task ``i`` and learning-rate candidate ``k`` the run folder gets
``tasks/<i>-<name>/lr<k>/`` (one ``run_training`` of the shared runtime with the
``TaskRun`` hooks of ``task_run.py``: checkpoints, logs, metrics.json), where the task trains from
the model saved after task ``i-1``; the candidate with the best *validation* score of the
task is kept (never the reported test split), its model becomes ``state/after-<i>.pt``
and the task's row of the matrix (test scores on every task, plus the domain's extras such
as zero-shot retention) goes to ``tasks/<i>-<name>/row.json``. A killed run re-run with
the same command skips finished tasks and candidates, resumes the interrupted candidate
from its last checkpoint, and ends with the same matrix as an uninterrupted run: every
random draw is seeded by ``(seed, task)`` and every task starts from the saved model.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

from lorakit.data import run_lock
from lorakit.data.runs import RunFolder, open_run, read_json, write_json
from lorakit.data.runtime.options import trainer_options
from lorakit.data.runtime.pipeline import run_training

from .baselines import Method
from .options import check_config, learning_rates
from .plots import matrix_heatmap, task_curves
from .scores import summary
from .state import build_model, changed_tensors, load_changed, load_state  # noqa: F401
from .task_run import TaskRun, candidate_record, task_config


def scores_row(domain, model, split: str = "test") -> dict[str, float]:
    """Every task's score (and the domain's extra scores) for the model as it is."""
    model.eval()
    row = {name: domain.evaluate(model, j, split) for j, name in enumerate(domain.task_names)}
    if split == "test":
        row |= domain.extras(model)
    return row


def train_candidate(domain, method, cfg, folder: Path, t: int, ids, lr, prev, callbacks):
    """Train task ``t`` (data of tasks ``ids``) with learning rate ``lr`` from the model saved
    in ``prev`` (one ``run_training`` of ``TaskRun`` in ``folder``: ``state.pt``,
    ``metrics.json``); writes ``result.json`` and returns the candidate's record."""
    task = TaskRun(domain, method, t, ids, prev)
    record = candidate_record(run_training(task, task_config(cfg, lr, ids), folder, callbacks))
    write_json(folder / "result.json", record)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return record


def run_task(domain, method, cfg, run: RunFolder, i: int, ids, prev, callbacks) -> dict:
    """Sweep the learning rates for task ``i``, keep the best on validation, score it."""
    folder = run.path / "tasks" / f"{i:02d}-{'+'.join(domain.task_names[j] for j in ids)}"
    lrs = learning_rates(cfg, i)
    records = []
    for k, lr in enumerate(lrs):
        cand = folder / f"lr{k}"
        if (cand / "result.json").is_file() and (cand / "state.pt").is_file():
            records.append(read_json(cand / "result.json", "candidate result"))
        else:
            records.append(train_candidate(domain, method, cfg, cand, i, ids, lr, prev, callbacks))
    pick = max if domain.higher_is_better else min
    best = pick(range(len(lrs)), key=lambda k: (records[k]["val"], -k))
    chosen = folder / f"lr{best}" / "state.pt"
    saved = load_state(chosen)
    seed = int(cfg["trainer"].get("seed", 0))
    model, _ = build_model(domain, method, i, None, seed)
    load_changed(model, saved["model"])
    row = scores_row(domain, model)
    after = run.path / "state" / f"after-{i:02d}.pt"
    after.parent.mkdir(parents=True, exist_ok=True)
    os.replace(chosen, after)
    record = {"task": i, "trained_on": [domain.task_names[j] for j in ids], "scores": row,
              "chosen_lr": lrs[best], "sweep": records,
              "sweep_seconds": round(sum(r["train_seconds"] for r in records), 2),
              **{k: v for k, v in records[best].items() if k not in ("lr",)}}  # fmt: skip
    write_json(folder / "row.json", record)
    for k in range(len(lrs)):
        (folder / f"lr{k}" / "state.pt").unlink(missing_ok=True)
    if prev is not None and prev != after:
        prev.unlink(missing_ok=True)  # only the newest model state is kept on disk
    return record


def run_sequence(domain, cfg: dict, out: Path, callbacks: list | None = None) -> dict:
    """Run (or resume) the continual sequence ``cfg`` describes; returns the metrics."""
    cfg = copy.deepcopy(cfg)
    section = check_config(cfg, domain)
    method = Method(section["method"], cfg["adapter"], domain.adapter_config)
    run = open_run(out, cfg, trainer_options(cfg["trainer"]).resume)
    try:
        return _sequence_in(domain, cfg, run, method, callbacks)
    finally:
        run_lock.release(run.path)


def _sequence_in(domain, cfg: dict, run: RunFolder, method: Method, callbacks) -> dict:
    """``run_sequence`` once the folder is open (and locked by this process)."""
    run.write_config(cfg)
    domain.prepare(run.path)
    seed = int(cfg["trainer"].get("seed", 0))
    before_file = run.path / "before.json"
    if before_file.is_file():
        before = read_json(before_file, "scores before training")
    else:
        model = domain.build_model(seed)
        before = scores_row(domain, model)
        write_json(before_file, before)
    n = len(domain.task_names)
    plan = [[j] for j in range(n)] if method.per_task else [list(range(n))]
    records, prev = [], None
    for i, ids in enumerate(plan):
        folder = run.path / "tasks" / f"{i:02d}-{'+'.join(domain.task_names[j] for j in ids)}"
        if (folder / "row.json").is_file():
            records.append(read_json(folder / "row.json", "task row"))
        else:
            records.append(run_task(domain, method, cfg, run, i, ids, prev, callbacks))
        prev = run.path / "state" / f"after-{i:02d}.pt"
    return finish(domain, cfg, run, records, before)


def finish(domain, cfg: dict, run: RunFolder, records: list[dict], before: dict) -> dict:
    """The matrix, its summary, costs and memory: metrics.json, matrix.csv and the plots."""
    names = list(domain.task_names)
    matrix = [[r["scores"][t] for t in names] for r in records]
    b = [before[t] for t in names]
    extras = {k: [before[k]] + [r["scores"][k] for r in records] for k in domain.extra_names}
    metrics = {
        "domain": cfg["continual"]["domain"],
        "method": cfg["continual"]["method"],
        "seed": int(cfg["trainer"].get("seed", 0)),
        "metric": domain.metric,
        "higher_is_better": domain.higher_is_better,
        "tasks": names,
        "matrix": matrix,
        "before": b,
        **summary(matrix, b, domain.higher_is_better),
        "extras": extras,
        "chosen_lr": [r["chosen_lr"] for r in records],
        "per_task": [
            {k: r.get(k) for k in ("trained_on", "steps", "train_seconds", "sweep_seconds",
                                    "optimizer_state", "gorp_full_weight_state",
                                    "adam_full_weight_state", "val", "resumed_from_step")}
            for r in records
        ],  # fmt: skip
        "optimizer_state_max": max(r.get("optimizer_state", 0) for r in records),
        "train_seconds": round(sum(r["train_seconds"] for r in records), 2),
        "train_steps": sum(r["steps"] for r in records),
    }
    rows = [["after"] + names + list(domain.extra_names)]
    rows.append(["before"] + [f"{before[k]:.4f}" for k in names + list(domain.extra_names)])
    for r in records:
        label = "+".join(r["trained_on"])
        rows.append([label] + [f"{r['scores'][k]:.4f}" for k in names + list(domain.extra_names)])
    from lorakit.data.runs import atomic_write_text

    atomic_write_text(run.path / "matrix.csv", "\n".join(",".join(x) for x in rows) + "\n")
    title = f"{metrics['method']} on {metrics['domain']} ({domain.metric})"
    matrix_heatmap(matrix, names, [r["trained_on"] for r in records], run.plots / "matrix.png",
                   title, domain.higher_is_better)  # fmt: skip
    task_curves(matrix, b, names, run.plots / "task_curves.png", title)
    run.write_metrics(metrics)
    return metrics
