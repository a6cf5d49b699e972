"""demos/tune_premade_cod.py: its trials score a validation draw only, and its pick needs
both S-measure and MAE better than zero-shot before it looks at S - MAE."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lorakit.apps.web.prebuilt import profile

DEMOS = Path(__file__).resolve().parents[3] / "demos"


def _tuner():
    spec = importlib.util.spec_from_file_location("tune_premade_cod", DEMOS / "tune_premade_cod.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(s: float, mae: float, lr: float = 1e-2, steps: int = 40) -> dict:
    return {"s": s, "mae": mae, "lr": lr, "steps": steps}


def test_the_pick_needs_both_metrics_above_zero_shot_before_the_best_s_minus_mae():
    tune = _tuner()
    zero = {"s": 0.70, "mae": 0.10}
    s_only = _row(0.90, 0.12)  # best S - MAE (0.78), but MAE worse than zero-shot
    both = _row(0.72, 0.09)  # S - MAE 0.63, better on both
    assert tune.choose([s_only, both], zero) is both
    # none better on both: the best S - MAE overall; ties go to fewer steps
    worse = _row(0.60, 0.20)
    assert tune.choose([s_only, worse], zero) is s_only
    short, long = _row(0.8, 0.1, steps=40), _row(0.8, 0.1, steps=80)
    assert tune.choose([long, short], zero) is short


def test_a_trial_is_scored_on_the_validation_scenes_not_the_runs_test_draw(tmp_path):
    tune = _tuner()
    spec = next(s for s in profile("demo", tmp_path) if s.key == "cod-fora")
    val = tmp_path / "val"
    cfg = tune.trial_config(spec, 3e-3, 40, False, val)
    assert cfg["data"]["test"] == {"validation": str(val)}
    assert cfg["optim"]["lr"] == 3e-3 and cfg["trainer"]["max_steps"] == 40
    assert cfg["loss"]["balanced"] is False
    # the run's own scenes: training seed data.seed, test seed data.seed + 7919
    assert tune.VAL_SEED not in (cfg["data"]["seed"], cfg["data"]["seed"] + 7919)
