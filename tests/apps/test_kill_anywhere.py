"""A real SIGKILL at the two moments issue 22 names, then the same command: during data
generation (the folder used to refuse every later run, "not empty"; now the data is built
in a temporary folder and renamed in) and during the adapter write (a temporary file was
left forever and ``resumed_from_step`` said 0). The re-run ends exactly where an
uninterrupted run ends. Tiny few-shot CLIP; run with ``-m reliability``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.reliability

TINY = {
    "data": {"generate": {"classes": ["red circle", "green square"], "train_per_class": 3,
                          "test_per_class": 2, "size": 32}, "shots": 3},
    "adapter": {"dropout": 0.0},
    "optim": {"lr": 0.01, "batch_size": 4},
    "trainer": {"max_steps": 6, "checkpoint_every": 2, "log_every": 1, "progress": False,
                "accelerator": "cpu"},
    "runtime": {"threads": 1},
}  # fmt: skip

# Runs `lorakit train ARGS` in a child that SIGKILLs itself at the patched moment.
KILLER = """
import os, signal, sys
from pathlib import Path
from lorakit.apps.cli.commands import main
moment = sys.argv.pop(1)
if moment == "generate":
    from lorakit.data import shapes
    real, calls = shapes.render, []
    def render(*a, **k):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    shapes.render = render
else:
    import lorakit.core.io as io
    def save_file(tensors, path, metadata=None):
        Path(path).write_bytes(b"half an adapter")
        os.kill(os.getpid(), signal.SIGKILL)
    io.save_file = save_file
sys.argv = ["lorakit", "train", *sys.argv[1:]]
main()
"""


def killed(moment: str, args: list[str], out) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", KILLER, moment, *args, "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (out / "metrics.json").exists()


def test_killed_generating_then_killed_saving_then_the_same_command(tmp_path, runs):
    """One chain, four processes (the group's time is short): the reference run; the same
    command killed while it generates the data; again, killed while it writes the adapter
    (training done); again, which ends exactly where the reference ended."""
    (tmp_path / "clip.yaml").write_text(yaml.safe_dump(TINY))
    args = ["clip", "--config", str(tmp_path / "clip.yaml")]
    runs.train(args, tmp_path / "reference")
    out = tmp_path / "killed"
    killed("generate", args, out)
    building = list(out.glob(".data.*.tmp"))  # the images go there, then are renamed in
    assert building and any(building[0].rglob("*.png")), "the kill came before any image"
    assert not list((out / "data").rglob("*.png"))
    killed("save", args, out)
    assert list((out / "adapter").glob(".*.tmp")), "the kill left no temporary file"
    assert (out / "data" / "spec.json").is_file() and not list(out.glob(".data.*"))
    metrics = runs.train(args, out)
    assert metrics["resumed_from_step"] == TINY["trainer"]["max_steps"]
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".data.*"))
    runs.same(tmp_path / "reference", out)
