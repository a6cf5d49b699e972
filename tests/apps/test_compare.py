"""``lorakit compare``: interval math, lr chosen on validation, resume, one-line errors, and
a tiny real comparison on the CLIP pipeline."""

from __future__ import annotations

import json
import math
import sys
import types

import pytest
from typer.testing import CliRunner

from lorakit.apps import compare_pipelines
from lorakit.apps.cli import app
from lorakit.apps.compare import make_plan, run_plan
from lorakit.apps.compare_pipelines import PipelineSpec
from lorakit.apps.compare_report import write_report
from lorakit.apps.compare_stats import choose_lr, t_interval, welch_interval

# --------------------------------------------------------------------------- statistics


def test_t_interval_matches_the_textbook():
    ci = t_interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t_{0.975, 2} = 4.302653
    assert ci.mean == 2.0 and ci.n == 3
    assert ci.half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert (ci.low, ci.high) == pytest.approx((2 - ci.half, 2 + ci.half))
    five = t_interval([0.5, 0.7, 0.6, 0.9, 0.8])  # s = 0.158114, t_{0.975, 4} = 2.776445
    assert five.half == pytest.approx(2.776445 * 0.158114 / math.sqrt(5), rel=1e-5)
    assert t_interval([0.4]).half is None  # one seed: no interval


def test_welch_interval_of_a_difference():
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0]
    d = welch_interval(a, b)
    va, vb = 1.0 / 3, (20 / 3) / 4  # s^2 / n
    # Welch-Satterthwaite df = (va + vb)^2 / (va^2 / 2 + vb^2 / 3) = 4.0755, t_{0.975} = 2.756285
    assert d.mean == pytest.approx(2.0 - 5.0)
    assert d.half == pytest.approx(2.756285 * math.sqrt(va + vb), rel=1e-5)


def test_choose_lr_follows_validation_and_breaks_ties_low():
    assert choose_lr({1e-3: [0.9, 0.8], 1e-2: [0.5, 0.6]}, True) == 1e-3
    assert choose_lr({1e-3: [0.9, 0.8], 1e-2: [0.5, 0.6]}, False) == 1e-2  # e.g. WER
    assert choose_lr({1e-3: [0.7], 1e-2: [0.7]}, True) == 1e-3


# --------------------------------------------------------------------------- a fake pipeline
# Validation prefers the smallest lr, test the largest: a choice made on test would pick 0.1.

VAL = {0.001: 0.9, 0.01: 0.6, 0.1: 0.3}
TEST = {0.001: 0.5, 0.01: 0.7, 0.1: 0.95}


def _fake_module(calls: list):
    def train(cfg, out, callbacks=None):
        calls.append((cfg["adapter"]["method"], cfg["optim"]["lr"], cfg["trainer"]["seed"]))
        out.mkdir(parents=True, exist_ok=True)
        (out / "cfg.json").write_text(json.dumps(cfg))
        seed = cfg["trainer"]["seed"]
        return {"accuracy": TEST[cfg["optim"]["lr"]] + 0.01 * seed, "steps": 2}

    def evaluate(run, overrides):
        assert overrides == {"split": "val"}  # scored on the validation split, never on test
        cfg = json.loads((run / "cfg.json").read_text())
        return {"accuracy": VAL[cfg["optim"]["lr"]] + 0.01 * cfg["trainer"]["seed"]}

    mod = types.ModuleType("lorakit_fake_pipeline")
    mod.DEFAULTS = {
        "adapter": {"method": "lora", "where": "all"},
        "optim": {"lr": 0.01},
        "trainer": {"max_steps": 2, "seed": 0},
    }
    mod.train, mod.evaluate = train, evaluate
    return mod


@pytest.fixture
def fake(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "lorakit_fake_pipeline", _fake_module(calls))
    spec = PipelineSpec(
        "fake", "lorakit_fake_pipeline", "adapter", "method", ("where",), "optim.lr",
        "accuracy", True, (), None, (), lambda cfg, d, dry: {} if dry else {"split": "val"},
        lambda m: None if m != "gorp" else "no", lambda cfg: None,
    )
    monkeypatch.setitem(compare_pipelines.PIPELINES, "fake", spec)
    return calls


def _plan(tmp_path, **kw):
    args = {"lrs": "0.001,0.01,0.1", "seeds": "0,1,2", "out": tmp_path / "cmp"} | kw
    return make_plan("fake", "lora,vera", **args)


def test_lr_is_chosen_on_validation_and_test_is_reported(fake, tmp_path):
    plan = _plan(tmp_path)
    rows = {r["method"]: r for r in write_report(plan, run_plan(plan, echo=lambda s: None))}
    assert rows["lora"]["lr"] == 0.001  # the validation optimum, not the test optimum 0.1
    assert rows["lora"]["mean"] == pytest.approx(0.5 + 0.01)  # test metric at that lr
    assert rows["lora"]["val_mean"] == pytest.approx(0.9 + 0.01)
    assert rows["vera"]["diff_vs_lora"] == pytest.approx(0.0)
    # every method gets the whole sweep, lora included, and its registry defaults
    assert sorted({lr for m, lr, _ in fake if m == "lora"}) == [0.001, 0.01, 0.1]
    assert plan.configs["vera"]["adapter"]["r"] == 256 and plan.configs["lora"]["adapter"]["r"] == 8
    assert plan.configs["vera"]["adapter"]["where"] == "all"  # placement kept from the config
    for name in ("compare.md", "compare.csv", "compare.png", "metrics.json"):
        assert (plan.out / name).is_file()


def test_resume_skips_finished_runs(fake, tmp_path):
    plan = _plan(tmp_path)
    run_plan(plan, echo=lambda s: None)
    assert len(fake) == 18
    (plan.folder("vera", 0.01, 1) / "metrics.json").unlink()  # as if killed during this run
    fake.clear()
    lines: list[str] = []
    run_plan(_plan(tmp_path), echo=lines.append)
    assert fake == [("vera", 0.01, 1)]
    assert sum("skipped" in line for line in lines) == 17
    fake.clear()
    run_plan(_plan(tmp_path, steps=5), echo=lambda s: None)  # another budget: nothing reused
    assert len(fake) == 18


# --------------------------------------------------------------------------- CLI errors

BAD = [
    (["--pipeline", "clip", "--methods", "lora,dora"], "unknown method 'dora'"),
    (["--pipeline", "vit", "--methods", "lora"], "unknown pipeline 'vit'"),
    (["--pipeline", "clip", "--methods", "lora,gorp"], "'gorp' cannot run on pipeline 'clip'"),
    (["--pipeline", "cod", "--methods", "vera"], "'vera' cannot run on pipeline 'cod'"),
    (["--pipeline", "clip", "--methods", "lora", "--seeds", "0,0"], "--seeds repeats"),
    (["--pipeline", "clip", "--methods", "lora", "--seeds", "one"], "not an integer"),
    (["--pipeline", "clip", "--methods", "lora", "--seeds", "-1"], "is negative"),
    (["--pipeline", "clip", "--methods", "lora", "--lrs", "0,1e-3"], "positive"),
    (["--pipeline", "clip", "--methods", "lora", "--method-set", "vera:adapter.r=4"], "not one"),
    (["--pipeline", "clip", "--methods", "lora", "--set", "adapter.towers=none"], "towers"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists()


# --------------------------------------------------------------------------- the real thing


def test_tiny_real_compare_on_clip(tmp_path):
    """Two methods, one lr, two seeds, a few steps of the CLIP offline example."""
    out = tmp_path / "cmp"
    args = [
        "compare", "--pipeline", "clip", "--methods", "lora,loldu",
        "--config", "demos/clip.yaml", "--steps", "3", "--lrs", "0.01", "--seeds", "0,1",
        "--set", "data.generate.train_per_class=8", "--set", "data.generate.test_per_class=6",
        "--set", "data.heldout=null", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "metrics.json").read_text())
    rows = {r["method"]: r for r in summary["methods"]}
    assert set(rows) == {"lora", "loldu"} and summary["seeds"] == [0, 1]
    lora, loldu = rows["lora"], rows["loldu"]
    assert lora["ci95_low"] <= lora["mean"] <= lora["ci95_high"]
    assert 0 < loldu["trainable_parameters"] < lora["trainable_parameters"]
    assert lora["step_ms"] > 0 and lora["peak_memory_mb"] is not None
    for run in summary["runs"]:  # test and validation are different images
        assert run["val"]["accuracy"] is not None and run["test"]["accuracy"] is not None
    assert (out / "compare.png").stat().st_size > 10_000
    assert "| lora |" in (out / "compare.md").read_text()
    again = CliRunner().invoke(app, args)  # the same command again: every run is reused
    assert again.exit_code == 0 and again.output.count("skipped") == 4
