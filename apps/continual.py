"""``lorakit train continual``: a sequence of tasks in one domain, with GORP or a baseline.

    lorakit train continual --config demos/continual.yaml --out runs/continual
    lorakit eval continual --run runs/continual      # re-reads the finished run's metrics

The protocol itself (task loop, lr sweep on validation, matrix, BWT/FWT, plots, resume) is
``lorakit.data.continual``, each task trained by the shared runtime's ``run_training``; the domains are ``lorakit.vision.clip.continual`` (few-shot
datasets + zero-shot retention) and ``lorakit.speech.whisper.continual`` (adult, child-like,
noisy / fast speech; WER). A run folder gets config.yaml, before.json, tasks/*/row.json,
matrix.csv, metrics.json, plots/matrix.png and plots/task_curves.png.
"""

from __future__ import annotations

from pathlib import Path

from lorakit.data.runs import RunFolder

DOMAINS = ("clip", "whisper")

DEFAULTS: dict = {
    "continual": {"domain": "clip", "tasks": ["plain", "sketch", "cartoon"], "method": "gorp"},
    "adapter": {"r": 4, "alpha": 4.0, "dropout": 0.0},
    "optim": {"lr": [1e-3, 3e-3], "task_lr": None, "weight_decay": 0.0, "warmup_steps": 0,
              "batch_size": 16},  # fmt: skip
    "trainer": {"max_steps": 40, "checkpoint_every": 20, "log_every": 5, "accelerator": "cpu",
                "progress": False},  # fmt: skip
    "clip": {},
    "whisper": {},
    "runtime": {"threads": None},
}


def check(cfg: dict) -> None:
    """The sections every domain shares, checked without torch (the CLI runs this before the
    pipeline loads): domain, method, optim, trainer and the adapter method's fields. The
    domain's own section and task names are checked when the domain is made."""
    from types import SimpleNamespace

    from lorakit.data.continual.names import check_adapter
    from lorakit.data.continual.options import check_config
    from lorakit.data.runtime.options import TrainerOptions
    from lorakit.data.sections import typed_section

    section = cfg.get("continual") or {}
    if section.get("domain") not in DOMAINS:
        raise ValueError(
            f"continual.domain: unknown domain {section.get('domain')!r}; choose from {list(DOMAINS)}"
        )
    tasks = section.get("tasks")
    names = tasks if isinstance(tasks, list) and tasks else ["?"]
    check_config(cfg, SimpleNamespace(task_names=names))
    check_adapter(section["method"], cfg.get("adapter") or {})
    typed_section(TrainerOptions, cfg.get("trainer"), "trainer").validate_light()  # no torch


def make_domain(cfg: dict):
    """The domain object the config names (validated: unknown domain or task is one line)."""
    section = cfg.get("continual") or {}
    domain = section.get("domain")
    if domain not in DOMAINS:
        raise ValueError(f"continual.domain: unknown domain {domain!r}; choose from {list(DOMAINS)}")
    tasks = section.get("tasks")
    if domain == "clip":
        from lorakit.vision.clip.continual import ClipTasks

        return ClipTasks(cfg.get("clip") or {}, tasks)
    from lorakit.speech.whisper.continual import WhisperTasks

    return WhisperTasks(cfg.get("whisper") or {}, tasks)


def train(cfg: dict, out: Path, callbacks: list | None = None) -> dict:
    """Run (or resume) the sequence; every section is checked before anything is written."""
    from lorakit.data.continual import run_sequence
    from lorakit.data.runtime.pipeline import set_threads

    set_threads(cfg)
    domain = make_domain(cfg)
    return run_sequence(domain, cfg, Path(out), callbacks)


def evaluate(run: Path, overrides: dict) -> dict:
    """The finished run's metrics (the matrix is computed during the run, task by task)."""
    if overrides:
        raise ValueError("eval continual takes no --set: re-run train to change the protocol")
    folder = RunFolder(run)
    metrics = folder.read_metrics()
    if not metrics:
        raise ValueError(f"{run} has no metrics.json: the sequence has not finished; re-run train")
    return metrics
