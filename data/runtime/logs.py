"""A CSV logger that continues the log of an interrupted run instead of deleting it.

Lightning's ``CSVLogger`` removes ``metrics.csv`` when its folder is not empty, so a
resumed run used to lose every row written before the crash. Here the rows logged before
the resume step are kept (rows after it were logged by steps the resumed run repeats).

Lightning writes a step's row *after* the checkpoint of that step, so a kill in between
would lose it: ``LogTail`` puts that row into the checkpoint itself, and the resumed log
takes it from there.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class LogTail(L.Callback):
    """Carries, in each checkpoint, the log row Lightning writes just after it."""

    def __init__(self):
        self._trainer = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict:
        t = self._trainer
        if t is None or t.fit_loop._should_accumulate():
            return {}
        connector = t._logger_connector
        if not connector.should_update_logs:
            return {}
        row = {k: v.item() if hasattr(v, "item") else v for k, v in connector.metrics["log"].items()}
        row.setdefault("epoch", t.current_epoch)
        return {"step": int(t.fit_loop.epoch_loop._batches_that_stepped), "row": row}

    def load_state_dict(self, state_dict: dict) -> None:
        t = self._trainer
        if state_dict and t is not None and t.is_global_zero:
            for logger in t.loggers:
                if isinstance(logger, ContinuedCSVLogger):
                    logger.experiment.apply_tail(state_dict)


class _ContinuedWriter(ExperimentWriter):
    keep_before = 0

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if path.is_file() and not self.keep_before:
            path.unlink()
        elif path.is_file():
            self._rewrite(lambda step: step < self.keep_before)

    def apply_tail(self, tail: dict) -> None:
        """Put the checkpoint's row back (and drop any row from the same step on)."""
        self._rewrite(lambda step: step < tail["step"], {**tail["row"], "step": tail["step"]})

    def _rewrite(self, keep, extra: dict | None = None) -> None:
        path = Path(self.metrics_file_path)
        header, rows = [], []
        if path.is_file():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                rows = [r for r in reader if r.get("step") and keep(float(r["step"]))]
        if extra is not None:
            rows.append(extra)
            header = sorted(set(header) | set(extra))
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        self.metrics_keys = sorted(header)


class ContinuedCSVLogger(CSVLogger):
    """``CSVLogger(save_dir, name="logs", version="")`` keeping rows with ``step <
    keep_before`` of an existing ``logs/metrics.csv`` (``keep_before=0``: a fresh log)."""

    def __init__(self, save_dir, keep_before: int = 0):
        # flush every row (an append): rows before a checkpoint must be on disk when a kill
        # comes, since only the last one travels in the checkpoint (LogTail)
        super().__init__(save_dir, name="logs", version="", flush_logs_every_n_steps=1)
        self.keep_before = int(keep_before)

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            writer = type("Writer", (_ContinuedWriter,), {"keep_before": self.keep_before})
            self._experiment = writer(log_dir=self.log_dir)
        return self._experiment
