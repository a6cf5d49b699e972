"""A Lightning callback measuring what ``lorakit compare`` reports beside the metric.

    trainable       parameters with requires_grad when the first batch starts (after the
                    protocol's prepare step; shared tensors counted once)
    median_ms()     median wall time between consecutive optimizer steps (forward,
                    backward, optimizer, data loading, method hooks), the first step left out
    peak_mb         training's peak memory above what the process held when training began:
                    CUDA ``max_memory_allocated``; CPU the peak resident set (VmHWM, reset
                    through /proc/self/clear_refs, after freed heap pages are handed back
                    with malloc_trim), where that is unavailable the largest resident set
                    seen at the end of a step
"""

from __future__ import annotations

import ctypes
import gc
import re
import statistics
import time
from pathlib import Path

import lightning as L
import torch

_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    try:
        m = re.search(rf"{field}:\s+(\d+)\s+kB", _STATUS.read_text())
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc), so that RSS growth during this run is
    this run's memory rather than pages cached from earlier runs of the same process."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class StepProbe(L.Callback):
    def __init__(self):
        self.trainable: int | None = None
        self.times: list[float] = []
        self.peak_mb: float | None = None
        self.memory_kind = "none"
        self._last = None
        self._step = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._cuda = pl_module.device.type == "cuda"
        if self._cuda:
            torch.cuda.reset_peak_memory_stats(pl_module.device)
            self._base = torch.cuda.memory_allocated(pl_module.device)
            self.memory_kind = "cuda max_memory_allocated"
        else:
            gc.collect()
            _trim_heap()
            self._hwm = _reset_hwm() and _status_kb("VmHWM") is not None
            self._base = _status_kb("VmRSS") or 0
            self._seen = self._base
            self.memory_kind = "cpu peak RSS (VmHWM)" if self._hwm else "cpu RSS sampled per step"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.trainable is None:
            self.trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self._step:
            return  # a gradient-accumulation micro-batch
        if self._cuda:
            torch.cuda.synchronize(pl_module.device)
        else:
            self._seen = max(self._seen, _status_kb("VmRSS") or 0)
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last, self._step = now, trainer.global_step

    def on_train_end(self, trainer, pl_module) -> None:
        if self._cuda:
            peak = torch.cuda.max_memory_allocated(pl_module.device) - self._base
            self.peak_mb = round(peak / 2**20, 1)
        else:
            top = (_status_kb("VmHWM") or self._seen) if self._hwm else self._seen
            self.peak_mb = round(max(top - self._base, 0) / 1024, 1)

    def median_ms(self) -> float | None:
        return round(1000 * statistics.median(self.times), 1) if self.times else None
