"""One training process per run folder: an advisory lock on ``<run>/.lorakit.lock``.

Two processes training into one folder would both resume from ``last.ckpt``, remove each
other's in-flight temporary files and overwrite each other's results. ``open_run`` takes
this lock before it changes anything; a second process is refused in one line naming the
holder. The kernel drops the lock when its process dies, so a killed run resumes at once;
a finished run releases it and removes the file.

Only rank 0 locks: the other ranks of a DDP run (``RANK`` / ``LOCAL_RANK`` /
``NODE_RANK`` non-zero in their environment) share rank 0's folder. The lock is
re-entrant within a process: a pipeline that opens its folder again keeps the lock until
the outermost opener releases it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lorakit.lock"
_held: dict[Path, list[int]] = {}  # resolved run folder -> [lock file descriptor, depth]


def is_rank_zero() -> bool:
    """Whether this process is rank 0 as the launcher's environment says (no launcher: yes)."""
    return all(int(os.environ.get(k) or 0) == 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def acquire(folder: str | os.PathLike) -> None:
    """Lock ``folder`` (an existing run folder) for this process, or raise a one-line
    ``ValueError`` naming the process that trains in it."""
    if not is_rank_zero():
        return
    key = Path(folder).resolve()
    if key in _held:
        _held[key][1] += 1  # opened again by its holder: released when the outer call ends
        return
    path = key / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ValueError(in_use(folder, holder)) from None
        try:  # the holder may have removed the file between our open and our lock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[key] = [fd, 1]


def in_use(folder: str | os.PathLike, pid: str) -> str:
    """The one line that refuses a run folder process ``pid`` trains in."""
    return (
        f"run folder {folder} is in use: process {pid} is training in it "
        "(wait for it to finish, or give another --out)"
    )


def holder(folder: str | os.PathLike) -> str | None:
    """The pid (as its lock file says) of another process training in ``folder``, or None.
    Creates nothing: a caller can check every folder before it starts any of them."""
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def release(folder: str | os.PathLike) -> None:
    """Drop this process's lock on ``folder`` and remove the lock file (no-op if not held)."""
    key = Path(folder).resolve()
    if key not in _held:
        return
    _held[key][1] -= 1
    if _held[key][1] > 0:
        return
    fd, _ = _held.pop(key)
    (key / LOCK_NAME).unlink(missing_ok=True)  # removed while still locked
    os.close(fd)
