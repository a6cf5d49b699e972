"""Generated data sets written atomically: a kill at any moment leaves either the complete
old data, or a folder the next call regenerates, and no temporary folder behind it.

``install(root, build, stamp)`` calls ``build(tmp)`` on an empty temporary folder beside
``root`` (``.<root name>.<pid>.tmp``), then moves what it wrote into ``root`` by renames:
first ``root/<stamp>`` is removed (the file that says "this data is complete", e.g.
``spec.json``), then each entry replaces the old one of the same name (the old one goes to
``.<root name>.<pid>.old`` and is deleted), and the stamp is renamed in last. A reader that
trusts only a matching stamp therefore never sees a half-written data set. Entries ``build``
does not write (a nested held-out set, say) are left alone. Temporary folders of processes
that no longer run are removed at the start of every call.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(root: str | os.PathLike) -> None:
    """Delete ``.<root name>.<pid>.tmp|old`` beside ``root`` left by a killed process."""
    root = Path(root)
    if not root.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(root.name)}\.(\d+)\.(tmp|old)")
    for entry in root.parent.iterdir():
        m = pattern.fullmatch(entry.name)
        if m and (int(m.group(1)) == os.getpid() or not _alive(int(m.group(1)))):
            shutil.rmtree(entry, ignore_errors=True)


_GUARD = threading.Lock()
_ROOT_LOCKS: dict[str, threading.Lock] = {}


def _root_lock(root: Path) -> threading.Lock:
    """One lock per data folder in this process: two threads (two web requests) building the
    same folder at once would share its ``.<name>.<pid>.tmp`` and remove each other's."""
    with _GUARD:
        return _ROOT_LOCKS.setdefault(str(root.resolve()), threading.Lock())


def install(root: str | os.PathLike, build: Callable[[Path], object], stamp: str) -> Path:
    """Build a data set in a temporary folder, then move it into ``root``, ``stamp`` last.

    ``build(tmp)`` must write ``tmp/<stamp>``; its return value is ignored (paths it returns
    would point into ``tmp``). Returns ``root``. Calls for the same ``root`` from several
    threads of one process run one after another.
    """
    root = Path(root)
    with _root_lock(root):
        return _install(root, build, stamp)


def _install(root: Path, build: Callable[[Path], object], stamp: str) -> Path:
    remove_stale(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.{os.getpid()}.tmp"
    old = root.parent / f".{root.name}.{os.getpid()}.old"
    tmp.mkdir()
    try:
        build(tmp)
        if not (tmp / stamp).is_file():
            raise RuntimeError(f"generator wrote no {stamp} into {tmp}")
        root.mkdir(parents=True, exist_ok=True)
        (root / stamp).unlink(missing_ok=True)  # from here on the old data is not "complete"
        old.mkdir()
        for entry in sorted(tmp.iterdir()):
            if entry.name != stamp:
                dest = root / entry.name
                if dest.exists() or dest.is_symlink():
                    os.replace(dest, old / entry.name)
                os.replace(entry, dest)
        os.replace(tmp / stamp, root / stamp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return root
