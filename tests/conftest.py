"""Suite-wide settings: one torch thread (steady timings on a shared 2-core machine),
offline hubs, and a fixed seed per test."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# --------------------------------------------------------------------------- kill and rerun
# Shared by the pipelines' resume tests: `lorakit train` in a subprocess, killed with
# SIGKILL once a checkpoint exists, then run again with the same command.

VOLATILE = {"train_seconds", "seconds_per_step", "eval_seconds", "resumed_from_step"}


def _lorakit_env() -> dict:
    import os

    return dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        PYTHONWARNINGS="ignore",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )


def lorakit_train(args: list[str], out, kill_at_checkpoint: bool = False, timeout: float = 600):
    """Run ``lorakit train ARGS --out OUT``; with ``kill_at_checkpoint`` SIGKILL it as soon
    as ``checkpoints/last.ckpt`` exists and assert it had not finished (no metrics.json)."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    exe = Path(sys.executable).with_name("lorakit")
    out = Path(out)
    log = out.parent / f"{out.name}.log"
    with log.open("a") as f:
        proc = subprocess.Popen(
            [str(exe), "train", *args, "--out", str(out)], stdout=f, stderr=f, env=_lorakit_env()
        )
        start = time.time()
        if kill_at_checkpoint:
            while not (out / "checkpoints" / "last.ckpt").is_file():
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.time() - start < timeout, "no checkpoint appeared"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            assert not (out / "metrics.json").exists(), "the run ended before it was killed"
            return None
        proc.wait(timeout=timeout)
    assert proc.returncode == 0, log.read_text()[-3000:]
    import json

    return json.loads((out / "metrics.json").read_text())


def assert_same_run(a, b) -> None:
    """Two run folders hold the same metrics (timings aside), bit-identical adapter tensors
    and the same training log."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    a, b = Path(a), Path(b)
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    assert {k: v for k, v in ma.items() if k not in VOLATILE} == {
        k: v for k, v in mb.items() if k not in VOLATILE
    }
    files = sorted(p.name for p in (a / "adapter").glob("*.safetensors"))
    assert files and files == sorted(p.name for p in (b / "adapter").glob("*.safetensors"))
    for name in files:
        ta, tb = load_file(a / "adapter" / name), load_file(b / "adapter" / name)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), f"{name}:{k} differs"
    assert (a / "logs" / "metrics.csv").read_text() == (b / "logs" / "metrics.csv").read_text()


@pytest.fixture
def kill_and_rerun():
    """``kill_and_rerun(args, tmp_path) -> (reference, resumed)`` run folders: an
    uninterrupted run, and the same command killed after its first checkpoint and re-run;
    asserts the resumed run picked up from a checkpoint and matches the reference."""

    def check(args: list[str], where):
        ref, cut = where / "reference", where / "killed"
        lorakit_train(args, ref)
        lorakit_train(args, cut, kill_at_checkpoint=True)
        resumed = lorakit_train(args, cut)
        assert resumed["resumed_from_step"] > 0
        assert_same_run(ref, cut)
        return ref, cut

    return check
