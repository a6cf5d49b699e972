"""Worker processes that die with the process that started them.

A ``ProcessPoolExecutor`` worker outlives its parent: kill a benchmark's main process and
its workers go on training, into the same run folders a relaunch will want (the run lock
then refuses the relaunch, but the orphans still hold two CPU cores). ``worker_pool``
starts spawned workers that ask Linux to SIGKILL them when their parent dies
(``prctl(PR_SET_PDEATHSIG)``); a killed run resumes from its last checkpoint as usual.
Elsewhere the pool is a plain one.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Pool initializer: SIGKILL this worker when ``parent`` exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes (fresh interpreters: no forked torch threads) that die
    with this one."""
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )
