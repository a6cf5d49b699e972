"""Workers of ``worker_pool`` die with the process that started them (a killed benchmark
leaves no orphan training into its run folders); a plain pool's worker outlives it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

PARENT = """
import sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from lorakit.data.worker_pool import worker_pool

def work(path):
    import os, time
    open(path, "w").write(str(os.getpid()))
    time.sleep(60)

if __name__ == "__main__":
    plain = sys.argv[2] == "plain"
    pool = (ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            if plain else worker_pool(1))
    pool.submit(work, sys.argv[1])
    time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def worker_after_parent_killed(tmp_path: Path, kind: str) -> bool:
    script, pidfile = tmp_path / "parent.py", tmp_path / f"{kind}.pid"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(pidfile), kind])
    try:
        for _ in range(600):
            if pidfile.is_file() and pidfile.read_text():
                break
            time.sleep(0.1)
        worker = int(pidfile.read_text())
        parent.kill()
        parent.wait()
        for _ in range(50):  # up to 5 s for the kernel to deliver the signal
            if not alive(worker):
                return False
            time.sleep(0.1)
        os.kill(worker, 9)
        return True
    finally:
        parent.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_a_killed_parent_takes_its_workers_with_it(tmp_path):
    assert not worker_after_parent_killed(tmp_path, "pool")
    assert worker_after_parent_killed(tmp_path, "plain")  # why: a plain worker is orphaned
