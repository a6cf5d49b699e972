"""``lorakit compare``: interval math, lr chosen on validation, resume, one-line errors, and
a tiny real comparison on the CLIP pipeline."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import sys
import types

import pytest
from typer.testing import CliRunner

from lorakit.apps.cli.commands import app
from lorakit.apps.compare import pipelines as compare_pipelines
from lorakit.apps.compare.pipelines import PipelineSpec
from lorakit.apps.compare.report import write_report
from lorakit.apps.compare.run import make_plan, run_plan
from lorakit.apps.compare.stats import choose_lr, t_interval, welch_interval

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
# The two methods differ, seeds differ, and validation disagrees with test: LoRA's
# validation optimum is lr 0.001 but its test optimum 0.1; VeRA's validation optimum is 0.01
# but its test optimum 0.001. A choice made on test, or a method compared with itself,
# gives other numbers than the hand computations below.

VAL = {
    "lora": {0.001: 0.90, 0.01: 0.60, 0.1: 0.30},
    "vera": {0.001: 0.40, 0.01: 0.80, 0.1: 0.70},
}
TEST = {
    "lora": {0.001: 0.50, 0.01: 0.70, 0.1: 0.95},
    "vera": {0.001: 0.99, 0.01: 0.62, 0.1: 0.30},
}
TEST_SEED = {"lora": (0.00, 0.02, 0.07), "vera": (0.03, -0.01, 0.01)}  # per seed 0, 1, 2
VAL_SEED = (0.0, 0.01, -0.04)


def _fake_module(calls: list):
    def train(cfg, out, callbacks=None):
        method, lr, seed = cfg["adapter"]["method"], cfg["optim"]["lr"], cfg["trainer"]["seed"]
        calls.append((method, lr, seed))
        out.mkdir(parents=True, exist_ok=True)
        (out / "cfg.json").write_text(json.dumps(cfg))
        acc = TEST[method][lr] + TEST_SEED[method][seed]
        zs = 0.1 * seed + (0.2 if method == "lora" else 0.5)
        return {"accuracy": acc, "error": 1 - acc, "zs": zs, "steps": 2}

    def evaluate(run, overrides):
        assert overrides == {"split": "val"}  # scored on the validation split, never on test
        cfg = json.loads((run / "cfg.json").read_text())
        method, lr, seed = cfg["adapter"]["method"], cfg["optim"]["lr"], cfg["trainer"]["seed"]
        acc = VAL[method][lr] + VAL_SEED[seed]
        return {"accuracy": acc, "error": 1 - acc}

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
        "accuracy", True, ("zs",), None, (), lambda cfg, d, dry: {} if dry else {"split": "val"},
        lambda m: None if m != "gorp" else "no", lambda cfg: None,
    )
    monkeypatch.setitem(compare_pipelines.PIPELINES, "fake", spec)
    return calls


def _plan(tmp_path, **kw):
    args = {"lrs": "0.001,0.01,0.1", "seeds": "0,1,2", "out": tmp_path / "cmp"} | kw
    return make_plan("fake", "lora,vera", **args)


# Hand computation of the report's numbers (t quantiles from a table: t_{0.975, 2} = 4.302653,
# t_{0.975, 4} = 2.776445, t_{0.975, 3.124324} = 3.111991).
#   LoRA at lr 0.001: test 0.50, 0.52, 0.57 -> mean 0.53, s^2 = (9 + 1 + 16)e-4 / 2 = 0.0013
#   VeRA at lr 0.01:  test 0.65, 0.61, 0.63 -> mean 0.63, s^2 = (4 + 4 + 0)e-4 / 2 = 0.0004
#   VeRA - LoRA = 0.10, Welch se^2 = 0.0013/3 + 0.0004/3 = 0.0017/3,
#   df = 0.0017^2 / ((0.0013^2 + 0.0004^2) / 2) = 3.124324
#   LoRA - LoRA = 0 with se^2 = 2 * 0.0013/3 and df = 4
LORA_HALF = 4.302653 * math.sqrt(0.0013 / 3)
VERA_HALF = 4.302653 * math.sqrt(0.0004 / 3)
DIFF_HALF = 3.111991 * math.sqrt(0.0017 / 3)
SELF_HALF = 2.776445 * math.sqrt(2 * 0.0013 / 3)


def test_lr_is_chosen_on_validation_and_test_is_reported(fake, tmp_path):
    plan = _plan(tmp_path)
    rows = {r["method"]: r for r in write_report(plan, run_plan(plan, echo=lambda s: None))}
    lora, vera = rows["lora"], rows["vera"]
    # the validation optima, not the test optima (0.1 for LoRA, 0.001 for VeRA)
    assert (lora["lr"], vera["lr"]) == (0.001, 0.01)
    assert lora["val_mean"] == pytest.approx(0.90 - 0.01)  # mean of VAL_SEED is -0.01
    assert vera["val_mean"] == pytest.approx(0.80 - 0.01)
    assert vera["val_by_lr"] == pytest.approx({"0.001": 0.39, "0.01": 0.79, "0.1": 0.69})
    assert lora["test_by_seed"] == pytest.approx({0: 0.50, 1: 0.52, 2: 0.57})
    assert vera["test_by_seed"] == pytest.approx({0: 0.65, 1: 0.61, 2: 0.63})
    assert lora["zs"] == pytest.approx(0.3) and lora["seeds"] == 3  # an extra metric's mean
    # every method gets the whole sweep, lora included, and its registry defaults
    assert sorted({lr for m, lr, _ in fake if m == "lora"}) == [0.001, 0.01, 0.1]
    assert plan.configs["vera"]["adapter"]["r"] == 256 and plan.configs["lora"]["adapter"]["r"] == 8
    assert plan.configs["vera"]["adapter"]["where"] == "all"  # placement kept from the config
    for name in ("compare.md", "compare.csv", "compare.png", "metrics.json"):
        assert (plan.out / name).is_file()


def test_means_intervals_and_difference_match_a_hand_computation(fake, tmp_path):
    plan = _plan(tmp_path)
    rows = {r["method"]: r for r in write_report(plan, run_plan(plan, echo=lambda s: None))}
    lora, vera = rows["lora"], rows["vera"]
    assert lora["mean"] == pytest.approx(0.53) and vera["mean"] == pytest.approx(0.63)
    assert (lora["ci95_low"], lora["ci95_high"]) == pytest.approx(
        (0.53 - LORA_HALF, 0.53 + LORA_HALF), rel=1e-6
    )
    assert (vera["ci95_low"], vera["ci95_high"]) == pytest.approx(
        (0.63 - VERA_HALF, 0.63 + VERA_HALF), rel=1e-6
    )
    assert vera["diff_vs_lora"] == pytest.approx(0.10)
    assert vera["diff_ci95"] == pytest.approx(DIFF_HALF, rel=1e-6)
    assert lora["diff_vs_lora"] == pytest.approx(0.0, abs=1e-12)
    assert lora["diff_ci95"] == pytest.approx(SELF_HALF, rel=1e-6)
    # the same numbers in every written form
    summary = json.loads((plan.out / "metrics.json").read_text())
    assert [r["method"] for r in summary["methods"]] == ["lora", "vera"]
    assert summary["methods"][1]["diff_vs_lora"] == pytest.approx(0.10)
    assert len(summary["runs"]) == 18 and summary["failed_runs"] == []
    table = (plan.out / "compare.md").read_text()
    vera_line = f"| vera | 0.6300 ± {VERA_HALF:.4f} | +0.1000 ± {DIFF_HALF:.4f} | 0.6000 | 0.01 |"
    assert vera_line in table
    assert f"| lora | 0.5300 ± {LORA_HALF:.4f} | — | 0.3000 | 0.001 |" in table
    with (plan.out / "compare.csv").open() as f:
        csv_rows = {r["method"]: r for r in csv.DictReader(f)}
    assert float(csv_rows["vera"]["diff_vs_lora"]) == pytest.approx(0.10)
    assert float(csv_rows["vera"]["ci95_low"]) == pytest.approx(0.63 - VERA_HALF, rel=1e-6)
    assert float(csv_rows["lora"]["lr"]) == 0.001
    assert float(csv_rows["vera"]["zs"]) == pytest.approx(0.6)


def test_lower_is_better_metric_chooses_the_smallest_validation_mean(fake, tmp_path):
    """With a metric named like an error the choice flips: the lr of the LOWEST mean."""
    plan = _plan(tmp_path, metric="error")  # error = 1 - accuracy on both splits
    assert plan.higher_is_better is False
    rows = {r["method"]: r for r in write_report(plan, run_plan(plan, echo=lambda s: None))}
    assert (rows["lora"]["lr"], rows["vera"]["lr"]) == (0.001, 0.01)  # = max accuracy
    assert rows["lora"]["mean"] == pytest.approx(0.47)
    assert rows["vera"]["diff_vs_lora"] == pytest.approx(-0.10)


def test_a_method_with_every_run_failed_is_listed_not_tabled(fake, tmp_path):
    plan = _plan(tmp_path)
    records = [r for r in run_plan(plan, echo=lambda s: None) if r["method"] == "lora"]
    plan.failures.extend(
        {"method": "vera", "lr": lr, "seed": 0, "error": f"boom {lr}"} for lr in plan.lrs
    )
    rows = write_report(plan, records)
    assert [r["method"] for r in rows] == ["lora"]
    table = (plan.out / "compare.md").read_text()
    assert table.count("Failed: vera") == 1 and "boom 0.001" in table


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
    (["--pipeline", "clip", "--methods", "lora,sltrain_full"], "replaces the model's weights"),
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


def _digests(folder) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.png")}


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
    for row in (lora, loldu):  # two seeds: half = t_{0.975, 1} * |a - b| / 2
        a, b = (r["test"]["accuracy"] for r in summary["runs"] if r["method"] == row["method"])
        assert row["mean"] == pytest.approx((a + b) / 2)
        assert row["ci95_high"] - row["mean"] == pytest.approx(12.706205 * abs(a - b) / 2)
    assert 0 < loldu["trainable_parameters"] < lora["trainable_parameters"]
    assert lora["step_ms"] > 0 and lora["peak_memory_mb"] is not None
    # test and validation are different images: no validation image is a test image
    run_test = _digests(out / "runs" / "lora" / "lr_0.01" / "seed_0" / "run" / "data" / "test")
    val_test = _digests(out / "_data" / "clip_val" / "test")
    assert len(run_test) == len(val_test) == 36 and not run_test & val_test
    assert (out / "compare.png").stat().st_size > 10_000
    assert "| lora |" in (out / "compare.md").read_text()
    again = CliRunner().invoke(app, args)  # the same command again: every run is reused
    assert again.exit_code == 0 and again.output.count("skipped") == 4


def test_lorakit_methods_lists_the_weight_replacements_with_their_pipelines():
    text = CliRunner().invoke(app, ["methods"]).output
    assert "sltrain_full  -  SLTrain" in text
    assert "pipelines: clip, ood (adapter.method: sltrain_full)" in text
    rows = json.loads(CliRunner().invoke(app, ["methods", "--json"]).output)
    assert "sltrain_full" not in {r["method"] for r in rows}  # --json: adapters only
