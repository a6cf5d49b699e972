"""Two-process DDP on CPU (gloo) through the real CLI: Lightning's launcher re-runs the
command for rank 1, so the test drives ``lorakit train`` in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


# lora_sb: the prepare step's gradients are averaged across the two ranks
@pytest.mark.parametrize("method", ["lora", "lora_sb"])
def test_ddp_two_processes_on_cpu(shapes_root, tmp_path, method):
    lorakit = Path(sys.executable).with_name("lorakit")
    out = tmp_path / "run"
    cmd = [
        str(lorakit),
        "train",
        "clip",
        "--out",
        str(out),
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--max-steps",
        "6",
        "--set",
        f"data.root={shapes_root}",
        "--set",
        "trainer.accelerator=cpu",
        "--set",
        "trainer.progress=false",
        "--set",
        "optim.batch_size=8",
        "--set",
        "data.shots=2",
        "--set",
        "runtime.threads=1",
        "--set",
        f"adapter.method={method}",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting with 2 processes" in proc.stderr + proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and 0 <= metrics["accuracy"] <= 1
    assert (out / "adapter" / "adapter.safetensors").is_file()
    for rank in (0, 1):  # each process trained a batch and knew it was one of two
        seen = json.loads((out / "logs" / f"runtime_rank{rank}.json").read_text())
        assert (seen["world_size"], seen["global_rank"]) == (2, rank)
