"""Fast test runs for cosmic-ray: import torch, Lightning & co. once, fork per mutant.

cosmic-ray runs the test command once per mutant; a fresh ``python -m pytest`` spends ~7 s
importing torch and Lightning before the first test. This server imports those third-party
modules once (never ``lorakit``), and for each request forks a child that runs
``pytest.main(args)`` in the repository: the child imports lorakit, and so the mutated
file, fresh from disk (bytecode caching off). The client exits 0 when pytest passed.

    .venv/bin/python .ci/mutation_forkserver.py serve &            # once; FORK_SOCK=path
    .venv/bin/python .ci/mutation_forkserver.py run -x -q tests/data/test_intervals.py

One server per concurrent cosmic-ray session (requests are served one at a time).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

SOCK = os.environ.get("FORK_SOCK", "/tmp/lorakit_mutation.sock")
ROOT = Path(__file__).resolve().parents[1]


def _import_lorakit_from(root: Path) -> None:
    """Point the editable install's finder (lorakit.core -> <checkout>/core, ...) at ``root``,
    so a scratch copy of the repository (``.ci/mutate``) imports its own, mutated files."""
    for name, module in list(sys.modules.items()):
        mapping = getattr(module, "MAPPING", None)
        if name.startswith("__editable___lorakit") and isinstance(mapping, dict):
            for key, path in mapping.items():
                mapping[key] = str(root / Path(path).name)


def serve() -> None:
    import lightning  # noqa: F401
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import pytest  # noqa: F401
    import scipy.stats  # noqa: F401
    import torch  # noqa: F401
    import typer.testing  # noqa: F401
    import yaml  # noqa: F401

    assert not any(m.startswith("lorakit") for m in sys.modules), "lorakit imported early"
    if os.path.exists(SOCK):
        os.unlink(SOCK)
    server = socket.socket(socket.AF_UNIX)
    server.bind(SOCK)
    server.listen(64)
    while True:
        conn, _ = server.accept()
        args = conn.recv(65536).decode().split("\0")
        pid = os.fork()
        if pid == 0:
            server.close()
            sys.dont_write_bytecode = True
            os.chdir(ROOT)
            _import_lorakit_from(ROOT)
            signal.alarm(120)  # a mutant that loops forever counts as killed
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest

            os._exit(int(pytest.main(args)))
        _, status = os.waitpid(pid, 0)
        conn.sendall(str(os.waitstatus_to_exitcode(status)).encode())
        conn.close()


def run(args: list[str]) -> None:
    for _ in range(600):  # the server busy or starting: wait rather than report a kill
        try:
            client = socket.socket(socket.AF_UNIX)
            client.connect(SOCK)
            break
        except OSError:
            time.sleep(1)
    client.sendall("\0".join(args).encode())
    sys.exit(0 if int(client.recv(64).decode()) == 0 else 1)


if __name__ == "__main__":
    serve() if sys.argv[1] == "serve" else run(sys.argv[2:])
