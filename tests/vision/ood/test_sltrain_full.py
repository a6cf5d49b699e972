"""``adapter.method: sltrain_full`` in the ood pipeline: the tiny ViT's MLP Linears replaced
by SLTrain layers (and the head trained), resumed exactly, reloaded, WiSE-FT on the
densified weights."""

from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from lorakit.core import SLTrainLinear
from lorakit.vision.ood import pipeline

HYPER = {"density": 0.05, "init": "svd"}
MLP = "features.encoder.layers.encoder_layer_0.mlp.0"


class _Interrupt(L.Callback):
    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 3:
            assert (Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt").is_file()
            raise RuntimeError("simulated crash")


def test_train_resume_eval_and_wise(tiny_cfg, tmp_path):
    cfg = tiny_cfg("sltrain_full", adapter={"hyper": HYPER})
    full = pipeline.train(cfg, tmp_path / "full")
    assert full["method"] == "sltrain_full" and full["adapted_layers"] == 4  # 2 blocks x 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.train(cfg, tmp_path / "cut", callbacks=[_Interrupt()])
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert f"model.{MLP}.support" in state and f"model.{MLP}.A" in state
    assert not [k for k in state if k.endswith(".weight") and not k.startswith("model.head")]
    resumed = pipeline.train(cfg, tmp_path / "cut")
    assert resumed["resumed_from_step"] == 2
    drop = ("resumed_from_step",)
    assert {k: v for k, v in resumed.items() if k not in drop} == {
        k: v for k, v in full.items() if k not in drop
    }
    a = load_file(tmp_path / "full" / "adapter" / "adapter.safetensors")
    b = load_file(tmp_path / "cut" / "adapter" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = pipeline.evaluate(tmp_path / "full", {})
    assert again["id_accuracy"] == pytest.approx(full["id_accuracy"])
    assert [w["id_accuracy"] for w in again["wise"]] == pytest.approx(
        [w["id_accuracy"] for w in full["wise"]])
    assert full["wise"][-1]["id_accuracy"] == pytest.approx(full["id_accuracy"])  # alpha 1
    model = pipeline.adapted_model(tmp_path / "full")
    assert isinstance(model.get_submodule(MLP), SLTrainLinear)
    assert torch.equal(model.get_submodule(MLP).support, a[f"{MLP}.support"])


def test_bad_values_and_resnet_are_refused_before_any_write(tiny_cfg, tmp_path):
    for adapter, match in (
        ({"hyper": {"density": 0}}, "density"),
        ({"hyper": {"init": "zeros"}}, "init must be one of"),
        ({"hyper": {"energy": 1}}, r"unknown field\(s\) \['energy'\]"),
        ({"dropout": 0.1}, "has no dropout"),
    ):
        with pytest.raises(ValueError, match=match) as e:
            pipeline.train(tiny_cfg("sltrain_full", adapter=adapter), tmp_path / "run")
        assert "\n" not in str(e.value)
        assert not (tmp_path / "run").exists()
