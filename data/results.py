"""One results layout for every pipeline: training writes ``metrics.json``; ``lorakit eval``
writes ``eval/<suite>.json`` (``all`` unless the pipeline evaluates a named suite, as ood's
``--suite`` does).

The file each pipeline's ``eval`` wrote before is still written for one release, with the
same content: clip ``metrics_eval.json``, ood ``eval_<suite>.json``, cod and asr an updated
``metrics.json``.
"""

from __future__ import annotations

import re
from pathlib import Path

from lorakit.data.runs import write_json

SUITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def eval_file(run: str | Path, suite: str = "all") -> Path:
    """``run/eval/<suite>.json``; a suite name that is not a plain file name is one line."""
    if not SUITE.fullmatch(str(suite)) or ".." in str(suite):
        raise ValueError(f"eval suite name {suite!r} must be letters, digits, '_', '-' or '.'")
    return Path(run) / "eval" / f"{suite}.json"


def write_eval(run: str | Path, metrics: dict, suite: str = "all") -> Path:
    """Write ``metrics`` to ``eval_file(run, suite)`` (atomically); returns the path."""
    path = eval_file(run, suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, metrics)
    return path
