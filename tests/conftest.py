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

VOLATILE = {"train_seconds", "seconds_per_step", "eval_seconds", "resumed_from_step",
            "peak_rss_mb", "peak_cuda_mb"}  # timings and process memory


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


def assert_close_run(a, b, rtol: float, metrics: tuple[str, ...], atol: float = 0.0) -> None:
    """DDP against 1 process: every adapter tensor within ``rtol`` of its own scale
    (``max|a - b| <= rtol * max|b| + 1e-7``) and the named metrics within ``atol``."""
    import json
    from pathlib import Path

    from safetensors.torch import load_file

    a, b = Path(a), Path(b)
    files = sorted(p.name for p in (b / "adapter").glob("*.safetensors"))
    assert files
    for name in files:
        ta, tb = load_file(a / "adapter" / name), load_file(b / "adapter" / name)
        assert ta.keys() == tb.keys()
        for k in tb:
            err = float((ta[k].float() - tb[k].float()).abs().max())
            assert err <= rtol * float(tb[k].float().abs().max()) + 1e-7, (name, k, err)
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    for key in metrics:
        assert abs(ma[key] - mb[key]) <= atol, (key, ma[key], mb[key])


class _Runs:
    """The helpers above as a fixture (tests import nothing from conftest)."""

    train = staticmethod(lorakit_train)
    same = staticmethod(assert_same_run)
    close = staticmethod(assert_close_run)

    @staticmethod
    def kill_and_rerun(args: list[str], reference, where) -> None:
        """The same command killed after its first checkpoint and re-run ends exactly
        where the uninterrupted ``reference`` run ended."""
        lorakit_train(args, where, kill_at_checkpoint=True)
        resumed = lorakit_train(args, where)
        assert resumed["resumed_from_step"] > 0
        assert_same_run(reference, where)

    @staticmethod
    def ddp(args: list[str], where):
        """Two gloo processes on the CPU through Lightning's launcher."""
        from pathlib import Path

        ddp_args = ["--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"]
        metrics = lorakit_train(args + ddp_args, where)
        log = (Path(where).parent / f"{Path(where).name}.log").read_text()
        assert "MEMBER: 2/2" in log, "rank 1 never started"
        for rank in (0, 1):  # each process trained a batch and knew it was one of two
            seen = _Runs.seen(where, rank)
            assert (seen["world_size"], seen["global_rank"]) == (2, rank), seen
        return metrics

    @staticmethod
    def seen(run, rank: int = 0) -> dict:
        """What the first training forward of rank ``rank`` ran in (``PrecisionProbe``)."""
        import json
        from pathlib import Path

        return json.loads((Path(run) / "logs" / f"runtime_rank{rank}.json").read_text())

    @staticmethod
    def in_bf16(run) -> None:
        """bf16-mixed was in effect, not merely accepted: the forward pass ran under a bf16
        autocast and its Linear layers returned bf16."""
        seen = _Runs.seen(run)
        assert seen["precision"] == "bf16-mixed" and seen["autocast_enabled"], seen
        assert seen["autocast_dtype"] == "bfloat16" and "bfloat16" in seen["linear_output_dtypes"]


@pytest.fixture(scope="session")
def runs():
    return _Runs
