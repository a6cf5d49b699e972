"""Real-size runs as a user makes them: the real architectures with random weights, saved in
the official file formats, trained and evaluated through the ``lorakit`` command.

``run_lorakit(*args)`` runs the installed ``lorakit`` in a fresh process and returns its
output, wall time and peak resident set (that child's ``ru_maxrss`` from ``wait4``); the
line it prints (``pytest -s``) is what the README's real-size notes report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMOS = REPO / "demos"
LORAKIT = Path(sys.executable).parent / "lorakit"


@dataclass
class Ran:
    output: str
    wall_s: float
    peak_rss_gb: float


def run_lorakit(*args: str, cwd: Path, timeout: float = 1800) -> Ran:
    """``lorakit ARGS`` in ``cwd``; fails the test with the output's tail on a non-zero exit."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryFile("w+") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(LORAKIT), *args], cwd=cwd, env=env, stdout=log, stderr=log)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        log.seek(0)
        out = log.read()
    what = f"lorakit {' '.join(args[:2])}"
    if proc.returncode != 0:
        pytest.fail(f"{what} failed ({proc.returncode}; timeout {timeout} s):\n{out[-3000:]}")
    peak = usage.ru_maxrss / 2**20  # kB -> GB
    print(f"\n[real size] {what}: {wall:.0f} s, peak RSS {peak:.2f} GB")
    return Ran(out, wall, peak)


def file_mb(path: Path) -> float:
    return path.stat().st_size / 2**20


@pytest.fixture
def lorakit_cli():
    """``run_lorakit`` with the demos folder and ``file_mb`` beside it."""

    class Cli:
        run = staticmethod(run_lorakit)
        demos = DEMOS
        mb = staticmethod(file_mb)

    return Cli
