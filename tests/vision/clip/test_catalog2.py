"""Catalogue II methods through the CLIP pipeline: the runtime's one protocol callback."""

import json
from pathlib import Path

import lightning as L
import pytest

from lorakit.core import protocol
from lorakit.core.methods.allora import ALLoRAOptimizer
from lorakit.core.methods.altlora import AltLoRAOptimizer
from lorakit.vision.clip import pipeline

# settings that make the rank changes happen within a 20-step run
SHORT = {
    "sora": ["adapter.xi=20", "adapter.xi_ramp=5"],
    "increlora": ["adapter.warmup=2", "adapter.interval=3", "adapter.budget_r=4"],
    "lora_squeeze": ["adapter.r=8", "adapter.alpha=8", "adapter.target_r=2", "adapter.anneal_steps=10"],
    "diffora": ["adapter.search_steps=6"],
    "altlora": ["optim.lr=0.1"],
    "allora": ["adapter.dropout=0"],
    "lora_ggpo": [],
}
RANKED = {"sora", "increlora", "lora_squeeze", "diffora"}


def _cfg(run_cfg, method, *extra):
    return run_cfg(f"adapter.method={method}", "trainer.max_steps=20",
                   "trainer.checkpoint_every=10", *SHORT[method], *extra)


class _Spy(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, *args):
        self.optimizer = trainer.optimizers[0]
        self.model = pl_module.model


class _Interrupt(L.Callback):
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 13:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("method", ["increlora", "altlora", "sora"])
def test_resumed_run_ends_where_the_uninterrupted_run_ends(method, run_cfg, tmp_path):
    """IncreLoRA grows ranks at steps 2, 5, 8 (before the step-10 checkpoint) and 11, 14...;
    AltLoRA's optimizer keeps its phase and low-rank momenta; SoRA's gates have their own
    param group: a run cut at step 13 resumes from step 10 and ends where the
    uninterrupted run ends."""
    cfg = _cfg(run_cfg, method)
    full = pipeline.train(cfg, tmp_path / "full")
    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.train(cfg, tmp_path / "cut", callbacks=[_Interrupt()])
    resumed = pipeline.train(cfg, tmp_path / "cut")
    assert resumed["resumed_from_step"] == 10
    drop = ("resumed_from_step",)
    assert {k: v for k, v in resumed.items() if k not in drop} == {
        k: v for k, v in full.items() if k not in drop
    }
    if method != "increlora":
        return
    ranks = json.loads((tmp_path / "full" / "ranks.json").read_text())
    assert ranks == json.loads((tmp_path / "cut" / "ranks.json").read_text())
    assert ranks["methods"] == ["increlora"] and ranks["total"] > 12  # 12 slots started at r=2
    meta = json.loads((tmp_path / "full" / "adapter" / "adapter_config.json").read_text())
    saved = {f"{layer['name']}:{s}": r for layer in meta["layers"] for s, r in layer["ranks"].items()}
    assert saved == ranks["ranks"]
    assert (tmp_path / "full" / "plots" / "ranks.png").stat().st_size > 5000
    again = pipeline.evaluate(tmp_path / "full", {})  # a fresh model with those ranks
    assert again["accuracy"] == pytest.approx(full["accuracy"])


@pytest.mark.parametrize(
    ("method", "optimizer"),
    [("allora", ALLoRAOptimizer), ("altlora", AltLoRAOptimizer), ("sora", None)],
)
def test_pipeline_uses_the_methods_optimizer_and_groups(method, optimizer, run_cfg, tmp_path):
    spy = _Spy()
    metrics = pipeline.train(_cfg(run_cfg, method, "trainer.max_steps=6"), tmp_path, callbacks=[spy])
    assert metrics["method"] == method and metrics["steps"] == 6
    if optimizer is not None:
        assert isinstance(spy.optimizer, optimizer)
    else:  # SoRA: the gates in their own group without weight decay, same schedule
        gates = {id(m.g) for m in protocol.rank_changing_methods(spy.model)}
        groups = [g for g in spy.optimizer.param_groups if {id(p) for p in g["params"]} & gates]
        assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0
        assert {id(p) for p in groups[0]["params"]} == gates
        assert len({g["lr"] for g in spy.optimizer.param_groups}) == 1


@pytest.mark.slow
@pytest.mark.parametrize("method", list(SHORT))
def test_every_new_method_trains_end_to_end(method, run_cfg, tmp_path):
    metrics = pipeline.train(_cfg(run_cfg, method), tmp_path)
    assert metrics["method"] == method and metrics["steps"] == 20
    assert (tmp_path / "ranks.json").is_file() == (method in RANKED)
    assert (tmp_path / "plots" / "ranks.png").is_file() == (method in RANKED)
    again = pipeline.evaluate(tmp_path, {})
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])
    assert Path(tmp_path / "adapter" / "adapter.safetensors").is_file()
