"""A CSV logger that continues the log of an interrupted run instead of deleting it.

Lightning's ``CSVLogger`` removes ``metrics.csv`` when its folder is not empty, so a
resumed run used to lose every row written before the crash. Here the rows logged before
the resume step are kept (rows after it were logged by steps the resumed run repeats).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _ContinuedWriter(ExperimentWriter):
    keep_before = 0

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if not self.keep_before:
            path.unlink()
            return
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = [r for r in reader if r.get("step") and float(r["step"]) < self.keep_before]
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
        # flush every row: the row of the step a checkpoint is taken at is logged just after
        # the checkpoint is written, so it must reach the disk before a kill can lose it
        super().__init__(save_dir, name="logs", version="", flush_logs_every_n_steps=1)
        self.keep_before = int(keep_before)

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            writer = type("Writer", (_ContinuedWriter,), {"keep_before": self.keep_before})
            self._experiment = writer(log_dir=self.log_dir)
        return self._experiment
