"""Run folders as an attacker or a careless user leaves them (issue 22, items 2 and 5).

Nothing read from a run folder runs code (a pickle payload in ``last.ckpt`` or in a continual
state file never executes); every bad input is one ``error:`` line naming the file, field or
limit; a resume whose config differs from the saved one is refused before anything is
written; ``trainer.resume=false`` starts over; a kill during data generation or during the
adapter write leaves a folder the same command finishes. One tiny few-shot CLIP run (2
classes, 4 steps) is trained once and copied for each test.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import shutil
from pathlib import Path

import lightning.pytorch  # noqa: F401 - its log handler binds to the real stdout, not a runner's
import pytest
import torch
import yaml
from typer.testing import CliRunner

from lorakit.apps.cli.commands import app

TINY = {
    "data": {"generate": {"classes": ["red circle", "green square"], "train_per_class": 2,
                          "test_per_class": 2, "size": 32}, "shots": 2},
    "optim": {"lr": 0.01, "batch_size": 4},
    "trainer": {"max_steps": 4, "checkpoint_every": 2, "progress": False, "accelerator": "cpu"},
    "runtime": {"threads": 1},
}  # fmt: skip


class Payload:
    """Unpickling this writes ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('ran')",))


def payload_checkpoint(path: Path, marker: Path) -> None:
    """A file shaped like a Lightning checkpoint, with the payload inside."""
    torch.save({"global_step": 2, "state_dict": {}, "loops": {}, "x": Payload(marker)}, path)


def invoke(args: list[str]):
    """The CLI in this process; returns (exit code, non-empty stderr lines) (stdout holds
    the metrics JSON and Lightning's notes)."""
    result = CliRunner().invoke(app, args)
    assert "Traceback" not in result.output, result.output[-3000:]
    return result.exit_code, [ln for ln in result.stderr.splitlines() if ln.strip()]


def train(config: Path, out: Path, *extra: str):
    return invoke(["train", "clip", "--config", str(config), "--out", str(out), *extra])


def one_error(code: int, lines: list[str], *needles: str) -> str:
    """Exit code 2 and exactly one line on stderr, ``error: ...`` holding ``needles``."""
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*"))}  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    where = tmp_path_factory.mktemp("finished")
    config = where / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    code, lines = train(config, where / "run")
    assert code == 0, lines[-5:]
    return config, where / "run"


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run, at the same path as far as its config is concerned."""
    config, src = finished
    out = tmp_path / "run"
    shutil.copytree(src, out)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["data"]["root"] = str(out / "data")  # generated data lives in the run folder
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config, out


# --------------------------------------------------------------------------- no code runs


def test_pickle_payload_in_last_ckpt_never_runs(run, tmp_path):
    config, out = run
    marker = tmp_path / "pwned"
    payload_checkpoint(out / "checkpoints" / "last.ckpt", marker)
    code, lines = train(config, out)
    one_error(code, lines, "last.ckpt", "could run code", "exec", "trainer.resume=false")
    assert not marker.exists()


def test_truncated_checkpoint_never_suggests_an_unsafe_previous(run, tmp_path):
    config, out = run
    marker = tmp_path / "pwned"
    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    code, lines = train(config, out)  # previous.ckpt is a good checkpoint: go back to it
    one_error(code, lines, "last.ckpt", "truncated", "mv ")
    payload_checkpoint(out / "checkpoints" / "previous.ckpt", marker)
    code, lines = train(config, out)
    line = one_error(code, lines, "last.ckpt", "truncated", "trainer.resume=false")
    assert "mv " not in line and not marker.exists()


# --------------------------------------------------------------------------- bad input


def test_damaged_adapter_is_one_line_in_eval_and_predict(run):
    _, out = run
    weights = out / "adapter" / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    for args in (["eval", "clip", "--run", str(out)],
                 ["predict", "clip", "--run", str(out), "--image",
                  "demos/samples/red_circle.png"]):  # fmt: skip
        one_error(*invoke(args), "adapter.safetensors", "truncated")
    (out / "adapter" / "adapter_config.json").write_text('{"format": "lorakit-adapter", "meth')
    one_error(*invoke(["eval", "clip", "--run", str(out)]), "adapter_config.json", "unreadable")


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_at_a_checkpoint_keeps_the_last_good_one(finished, tmp_path, monkeypatch):
    from lorakit.data.runtime.trainer import checkpoint_step

    config, _ = finished
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the checkpoint at step 4; the one at step 2 was written
            f.write(b"partial")
            _no_space()
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    line = one_error(*train(config, out), "disk full", "last.ckpt", "last good checkpoint")
    assert "Traceback" not in line
    assert checkpoint_step(out / "checkpoints" / "last.ckpt") == 2
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("what", ["adapter", "metrics"])
def test_full_disk_at_the_adapter_or_metrics_keeps_the_old_file(run, monkeypatch, what):
    config, out = run
    name = {"adapter": "adapter/adapter.safetensors", "metrics": "metrics.json"}[what]
    before = (out / name).read_bytes()
    if what == "adapter":
        def save_file(tensors, path, metadata=None):
            Path(path).write_bytes(b"partial")
            _no_space()

        monkeypatch.setattr("lorakit.core.io.save_file", save_file)
    else:
        real = Path.write_text

        def write_text(self, *args, **kwargs):
            if self.name.startswith(".metrics.json"):
                real(self, "partial")
                _no_space()
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
    one_error(*train(config, out), "disk full", name.split("/")[-1])
    assert (out / name).read_bytes() == before
    assert not list(out.rglob("*.tmp"))


def test_full_disk_while_generating_data_is_one_line_then_the_same_command(finished, tmp_path,
                                                                           monkeypatch):
    from PIL import Image

    config, _ = finished
    real, calls = Image.Image.save, []

    def save(self, fp, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            _no_space()
        return real(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "run"
    one_error(*train(config, out), "disk full", str(out))
    assert not out.exists()  # a new folder whose run failed before training is removed
    out.mkdir()  # an existing folder keeps nothing of the failed generation either
    (out / "mine.txt").write_text("kept")
    calls.clear()
    one_error(*train(config, out), "disk full", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["data", "mine.txt"]
    assert [p.name for p in (out / "data").rglob("*")] == [".generating"]  # no image
    monkeypatch.setattr(Image.Image, "save", real)  # space freed: the same command runs
    code, lines = train(config, out)
    assert code == 0, lines[-3:]


# --------------------------------------------------------------------------- resume


def test_changed_config_is_refused_before_anything_is_written(run):
    """Before the data is generated too (the generated data of this run is removed first,
    so a refusal that came after ``resolve_data`` would show as a new ``data/``)."""
    config, out = run
    shutil.rmtree(out / "data")
    before = snapshot(out)
    code, lines = train(config, out, "--set", "adapter.r=4", "--set", "optim.lr=0.5",
                        "--set", "data.shots=1")  # fmt: skip
    one_error(code, lines, "adapter.r (2 -> 4)", "optim.lr (0.01 -> 0.5)", "data.shots (2 -> 1)",
              "trainer.resume=false")  # fmt: skip
    assert snapshot(out) == before


def test_allowed_changes_resume_and_resume_false_starts_over(run):
    config, out = run
    code, lines = train(config, out, "--set", "trainer.max_steps=6", "--set", "trainer.progress=true")
    assert code == 0, lines[-3:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 4 and metrics["steps"] == 6
    assert yaml.safe_load((out / "config.yaml").read_text())["trainer"]["max_steps"] == 6
    code, lines = train(config, out, "--set", "adapter.r=4", "--set", "trainer.resume=false")
    assert code == 0, lines[-3:]
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["adapter"]["r"] == 4
    from safetensors.torch import load_file

    shapes = {tuple(t.shape) for t in load_file(out / "adapter" / "adapter.safetensors").values()}
    assert any(4 in s for s in shapes)


CHANGES = [
    ("cod", "adapter.r=2", "optim.lr=0.5"),
    ("ood", "adapter.r=2", "optim.lr=0.5"),
    ("asr", "adapter.r=2", "optim.lr=0.5"),
]


@pytest.mark.parametrize(("pipeline", "rank", "lr"), CHANGES)
def test_every_pipeline_refuses_a_changed_rank_or_lr(tmp_path, pipeline, rank, lr):
    """The saved config is what the pipeline writes for the defaults; the refusal comes
    before any data is generated or a file is written."""
    import importlib

    from lorakit.apps.cli.commands import PIPELINES
    from lorakit.data.runs import RunFolder, load_config

    mod = importlib.import_module(PIPELINES[pipeline])
    cache = tmp_path / "cache"
    where = {"cod": [f"data.cache={cache}"], "ood": [f"data.root={cache}"],
             "asr": [f"data.generate.dir={cache}"]}[pipeline]  # fmt: skip
    out = tmp_path / "run"
    RunFolder(out).write_config(load_config(None, where, mod.DEFAULTS))
    before = snapshot(out)
    for change in (rank, lr):
        args = ["train", pipeline, "--out", str(out), "--set", where[0], "--set", change]
        one_error(*invoke(args), change.split("=")[0], "another config")
    assert snapshot(out) == before and not cache.exists()


class Kill(BaseException):
    """Stands in for SIGKILL in-process (the generator has no cleanup that would run)."""


def test_kill_during_data_generation_then_the_same_command(finished, tmp_path, monkeypatch):
    from lorakit.data import shapes
    from lorakit.data.runs import load_config
    from lorakit.vision.clip import pipeline

    config, _ = finished
    real, calls = shapes.render, []

    def render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Kill
        return real(*args, **kwargs)

    monkeypatch.setattr(shapes, "render", render)
    out = tmp_path / "run"
    with pytest.raises(Kill):
        pipeline.train(load_config(config, [], pipeline.DEFAULTS), out)
    assert calls and not list((out / "data").rglob("*.png")), "half a data set in place"
    monkeypatch.setattr(shapes, "render", real)
    code, lines = train(config, out)
    assert code == 0, lines[-3:]
    assert len(list((out / "data" / "train").rglob("*.png"))) == 4
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_kill_during_the_adapter_write_leaves_no_temp_and_a_true_resume(run):
    """The state such a kill leaves: training done (last.ckpt at step 4), a temporary
    adapter file, no metrics.json."""
    config, out = run
    (out / "metrics.json").unlink()
    stale = out / "adapter" / ".adapter.safetensors.k1ll3d.tmp"
    stale.write_bytes(b"")
    # and what a kill leaves while writing metrics.json or a checkpoint
    (out / ".metrics.json.4242.tmp").write_text("{")
    (out / "checkpoints" / ".last.ckpt.tmp").write_bytes(b"half")
    (out / "plots" / ".training_curve.tmp.png").write_bytes(b"half")
    (out / "tasks" / "00-a").mkdir(parents=True)  # a continual run's state, nested deeper
    (out / "tasks" / "00-a" / ".state.pt.tmp").write_bytes(b"half")
    code, lines = train(config, out)
    assert code == 0, lines[-3:]
    assert [p.name for p in out.rglob(".*") if ".tmp" in p.name] == []
    assert json.loads((out / "metrics.json").read_text())["resumed_from_step"] == 4


def test_resume_false_removes_the_old_run_before_training(run):
    """A start-over killed before its first checkpoint must not leave the old run's
    checkpoint for the next plain re-run to resume under the new config."""
    from lorakit.data import run_lock
    from lorakit.data.runs import open_run

    _, out = run
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["adapter"]["r"] = 4
    open_run(out, cfg, resume=False)
    run_lock.release(out)  # what the pipeline does when it stops
    left = sorted(p.name for p in out.iterdir())
    assert left == ["config.yaml", "data"], left


# --------------------------------------------------------------------------- one process per folder

HOLD = """
import sys, time
from lorakit.data import run_lock
run_lock.acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_process_training_into_a_busy_folder_is_refused_and_touches_nothing(run):
    """While one process trains in a folder (holds its lock, has a write in flight), a
    second ``lorakit train`` into it is one line naming the holder and changes nothing
    (it would otherwise resume the same checkpoint and delete the holder's temporary
    files); once the holder is killed the same command resumes, and a finished run
    leaves no lock file."""
    import subprocess
    import sys

    from lorakit.data.run_lock import LOCK_NAME

    config, out = run
    assert not (out / LOCK_NAME).exists()  # the finished run released its lock
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (out / "checkpoints" / ".last.ckpt.tmp").write_bytes(b"the holder's write in flight")
        before = snapshot(out)
        code, lines = train(config, out, "--set", "trainer.max_steps=6")
        one_error(code, lines, str(out), "in use", f"process {holder.pid}")
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    code, lines = train(config, out, "--set", "trainer.max_steps=6")
    assert code == 0, lines[-3:]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 6
    assert not (out / LOCK_NAME).exists() and not (out / "checkpoints" / ".last.ckpt.tmp").exists()


def test_only_rank_zero_locks_and_a_process_may_reopen_its_own_folder(tmp_path, monkeypatch):
    """The other ranks of a DDP run share rank 0's folder; the process holding the lock
    may open the folder again (a pipeline's second pass); another process may not."""
    import subprocess
    import sys

    from lorakit.data import run_lock

    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"process {holder.pid} is training in it"):
            run_lock.acquire(folder)
        assert run_lock.holder(folder) == str(holder.pid)
        for var in ("RANK", "LOCAL_RANK", "NODE_RANK"):
            with monkeypatch.context() as m:
                m.setenv(var, "1")
                run_lock.acquire(folder)  # a non-zero rank does not lock
                assert folder.resolve() not in run_lock._held
    finally:
        holder.kill()
        holder.wait()
    run_lock.acquire(folder)
    run_lock.acquire(folder)  # re-entrant: the inner release keeps the lock
    run_lock.release(folder)
    probe = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", ""), str(folder)],
                           capture_output=True, text=True)  # fmt: skip
    assert probe.returncode != 0 and "is in use" in probe.stderr
    run_lock.release(folder)
    assert not (folder / run_lock.LOCK_NAME).exists()
    assert run_lock.holder(folder) is None and not (folder / run_lock.LOCK_NAME).exists()
    probe = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", ""), str(folder)],
                           capture_output=True, text=True)  # fmt: skip
    assert probe.returncode == 0, probe.stderr
