"""The shared run (``run_training`` / ``run_eval``) on a toy pipeline: the sections are
checked before any folder is made, a changed config is refused before anything is written,
metrics.json carries the common keys, ``eval`` writes ``eval/all.json`` and refuses a run
without its adapter."""

from __future__ import annotations

import types
from dataclasses import asdict, dataclass

import pytest
import torch
from torch.utils.data import DataLoader

from lorakit.core import inject, load_adapter, make_config, save_adapter
from lorakit.core.zoo import build
from lorakit.data.runtime import AdapterModule, SeededItems, StepSampler
from lorakit.data.runtime.options import TrainerOptions
from lorakit.data.runtime.pipeline import COMMON_KEYS, Fit, Pipeline, run_eval, run_training
from lorakit.data.sections import check_sections


@dataclass
class ToyOptim:
    lr: float = 0.05
    batch_size: int = 2


DEFAULTS = {
    "adapter": {"method": "lora", "r": 2},
    "optim": asdict(ToyOptim()),
    "trainer": {"max_steps": 3, "progress": False, "checkpoint_every": 2, "log_every": 1},
}
SECTIONS = {"adapter": None, "optim": ToyOptim, "trainer": TrainerOptions}
TOY_CONFIG = types.SimpleNamespace(
    DEFAULTS=DEFAULTS, check=lambda cfg: check_sections(cfg, SECTIONS, DEFAULTS)
)


class _Module(AdapterModule):
    def task_loss(self, batch, batch_idx):
        return self.model(batch).pow(2).mean()


def _model(cfg: dict):
    model, x, targets, _ = build("linear")
    hyper = {k: v for k, v in cfg["adapter"].items() if k != "method"}
    report = inject(model, make_config(cfg["adapter"]["method"], targets=targets, **hyper))
    return model, x, report


class Toy(Pipeline):
    name, config = "toy", TOY_CONFIG

    def build(self, cfg, run, sections, data):
        model, x, report = _model(cfg)
        items = list(torch.randn(8, 6, 32))
        opts, optim = sections["trainer"], sections["optim"]
        sampler = StepSampler(len(items), optim.batch_size, opts.max_steps, opts.seed)
        return Fit(
            method=cfg["adapter"]["method"],
            module=_Module(model, lr=optim.lr),
            loader=DataLoader(SeededItems(items), batch_sampler=sampler),
            sampler=sampler,
            trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
            adapted_layers=len(report.layers),
            state={"model": model, "x": x},
        )

    def save(self, fit, run):
        save_adapter(fit.state["model"], run.adapter)

    def metrics(self, cfg, run, fit, sections):
        with torch.no_grad():
            return {"output_norm": float(fit.state["model"](fit.state["x"]).norm())}

    def evaluate(self, cfg, run, suite):
        model, x, _, _ = build("linear")
        load_adapter(model, run.adapter)
        with torch.no_grad():
            return {"output_norm": float(model(x).norm())}


def _cfg(**optim) -> dict:
    return {k: dict(v) for k, v in DEFAULTS.items()} | {"optim": {**DEFAULTS["optim"], **optim}}


def test_a_run_writes_the_common_keys_and_eval_recomputes_them(tmp_path):
    out = tmp_path / "run"
    metrics = run_training(Toy(), _cfg(), out)
    assert set(COMMON_KEYS) <= set(metrics)
    assert (metrics["method"], metrics["steps"], metrics["resumed_from_step"]) == ("lora", 3, 0)
    assert metrics["trainable_parameters"] > 0 and metrics["adapted_layers"] == 2
    for name in ("config.yaml", "metrics.json", "adapter/adapter_config.json"):
        assert (out / name).is_file(), name
    assert (out / "plots" / "training_curve.png").is_file()
    again = run_eval(Toy(), out, {"optim.batch_size": 2})
    assert again["output_norm"] == pytest.approx(metrics["output_norm"], rel=1e-6)
    assert (out / "eval" / "all.json").is_file()


def test_bad_sections_and_changed_configs_are_refused_before_any_write(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="optim.lr must be a number, got 'fast'"):
        run_training(Toy(), _cfg(lr="fast"), out)
    assert not out.exists()
    run_training(Toy(), _cfg(), out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="optim.lr"):
        run_training(Toy(), _cfg(lr=0.01), out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_eval_refuses_a_run_without_its_adapter(tmp_path):
    out = tmp_path / "run"
    run_training(Toy(), _cfg(), out)
    for f in (out / "adapter").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="has no trained adapter .* train first"):
        run_eval(Toy(), out, {})
    assert not (out / "eval").exists()
