"""The continual protocol: matrix bookkeeping, resume mid-sequence, early config errors."""

from __future__ import annotations

import json
import shutil

import lightning as L
import pytest
from typer.testing import CliRunner

from lorakit.apps import continual as pipeline
from lorakit.apps.cli.commands import app
from lorakit.data.continual import average_final, backward_transfer, forward_transfer, run_sequence
from lorakit.data.runs import load_config

# R[i][j]: score on task j after training task i
R = [[0.9, 0.2, 0.1], [0.7, 0.8, 0.3], [0.6, 0.5, 0.95]]
BEFORE = [0.1, 0.1, 0.2]


def test_scores_by_hand():
    assert average_final(R) == pytest.approx((0.6 + 0.5 + 0.95) / 3)
    # forgetting: task 0 lost 0.3, task 1 lost 0.3
    assert backward_transfer(R) == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8)) / 2)
    # before training task j, the previous stage scored 0.2 (vs 0.1) and 0.3 (vs 0.2)
    assert forward_transfer(R, BEFORE) == pytest.approx(((0.2 - 0.1) + (0.3 - 0.2)) / 2)
    # lower-is-better (WER): a rising error is forgetting, so the sign flips
    assert backward_transfer(R, sign=-1) == pytest.approx(0.3)
    assert backward_transfer([R[-1]]) is None and forward_transfer([R[-1]], BEFORE) is None


def tiny_cfg(tmp_path, method="gorp", **sets):
    """A 3-task CLIP sequence small enough for the default suite."""
    overrides = [
        f"continual.method={method}", "trainer.max_steps=4", "trainer.checkpoint_every=2",
        "optim.lr=0.003", "optim.batch_size=8", "clip.shots=2", "clip.train_per_class=4",
        "clip.test_per_class=3", "clip.size=16", "adapter.T=2", "adapter.r_g=4",
        *[f"{k}={v}" for k, v in sets.items()],
    ]  # fmt: skip
    cfg = load_config("demos/continual.yaml", overrides, pipeline.DEFAULTS)
    cfg["clip"]["backbone"] = {"name": "lorakit-tiny-vit"}
    return cfg


def run(cfg, out, callbacks=None):
    return run_sequence(pipeline.make_domain(cfg), cfg, out, callbacks)


def test_tiny_run_fills_the_matrix(tmp_path):
    m = run(tiny_cfg(tmp_path, "lora_merge"), tmp_path / "run")
    rows = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "tasks").glob("*/row.json"))]
    assert [r["trained_on"] for r in rows] == [["plain"], ["sketch"], ["cartoon"]]
    assert m["matrix"] == [[r["scores"][t] for t in m["tasks"]] for r in rows]
    n = len(m["tasks"])
    assert m["bwt"] == pytest.approx(sum(m["matrix"][-1][j] - m["matrix"][j][j] for j in range(n - 1)) / (n - 1))
    assert m["average"] == pytest.approx(sum(m["matrix"][-1]) / n)
    assert m["fwt"] == pytest.approx(sum(m["matrix"][j - 1][j] - m["before"][j] for j in range(1, n)) / (n - 1))
    assert len(m["extras"]["heldout_zero_shot"]) == n + 1
    assert all(t["steps"] == 4 and t["optimizer_state"] > 0 for t in m["per_task"])
    for png in ("matrix.png", "task_curves.png"):
        assert (tmp_path / "run" / "plots" / png).stat().st_size > 1000


class Kill(RuntimeError):
    pass


class KillInTask(L.Callback):
    """Stops the run inside the third task, after its first checkpoint (step 2 of 4)."""

    def on_train_batch_end(self, trainer, *args):
        if "02-cartoon" in str(trainer.default_root_dir) and trainer.global_step == 3:
            raise Kill


@pytest.mark.parametrize("method", ["gorp", "drs_lora"])
def test_resume_mid_sequence_gives_the_same_result(tmp_path, method):
    cfg = tiny_cfg(tmp_path, method)
    full = run(cfg, tmp_path / "a")
    with pytest.raises(Kill):
        run(cfg, tmp_path / "b", [KillInTask()])
    assert not (tmp_path / "b" / "metrics.json").exists()
    assert (tmp_path / "b" / "tasks" / "01-sketch" / "row.json").is_file()
    again = run(cfg, tmp_path / "b")
    assert again["per_task"][2]["resumed_from_step"] == 2
    assert again["matrix"] == full["matrix"]
    assert again["extras"] == full["extras"] and again["chosen_lr"] == full["chosen_lr"]
    assert (tmp_path / "b" / "matrix.csv").read_text() == (tmp_path / "a" / "matrix.csv").read_text()


BAD = [
    (["--set", "continual.tasks=[plain,nowhere,cartoon]"], "unknown task 'nowhere'"),
    (["--set", "continual.method=ewc"], "unknown continual method/baseline 'ewc'"),
    (["--set", "continual.domain=audio"], "unknown domain 'audio'"),
    (["--set", "optim.lr=-1"], "optim.lr must be positive"),
    (["--set", "adapter.r_g=-2"], "r_g must be an integer"),
    (["--set", "clip.bogus=1"], "clip: unknown key(s) ['bogus']"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_config_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "continual", "--config", "demos/continual.yaml", "--out", str(out), *args]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists()


def test_cli_runs_as_written(tmp_path):
    out = tmp_path / "run"
    args = ["train", "continual", "--config", "demos/continual.yaml", "--out", str(out),
            "--set", "trainer.max_steps=2", "--set", "optim.lr=0.003", "--set", "clip.shots=2",
            "--set", "clip.train_per_class=3", "--set", "clip.test_per_class=2",
            "--set", "continual.method=olora"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "olora" and len(metrics["matrix"]) == 3
    result = CliRunner().invoke(app, ["eval", "continual", "--run", str(out)])
    assert result.exit_code == 0 and json.loads(result.output)["matrix"] == metrics["matrix"]
    shutil.rmtree(out)
