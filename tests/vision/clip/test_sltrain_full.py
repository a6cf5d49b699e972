"""``adapter.method: sltrain_full`` in the clip pipeline: the MLP Linears of both towers are
replaced by SLTrain layers (``s B A + S``, no dense weight) and those layers are what
trains, checkpoints, resumes, saves and reloads."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lorakit.core import SLTrainLinear
from lorakit.data.runs import load_config
from lorakit.vision.clip import pipeline

SL = ("adapter.method=sltrain_full", "adapter.modules=[mlp]", "adapter.r=4", "adapter.alpha=4.0",
      "adapter.density=0.05")
MLP = "visual.transformer.resblocks.0.mlp.c_fc"


class _Interrupt(L.Callback):
    """Crashes at step 33, after the step-30 checkpoint (as in test_pipeline.py)."""

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 33:
            assert (Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt").is_file()
            raise RuntimeError("simulated crash")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shapes_root):
    """One uninterrupted sltrain_full run and one killed at step 33 then resumed."""
    base = [f"data.root={shapes_root}", "optim.lr=0.01", "optim.batch_size=16",
            "trainer.max_steps=60", "trainer.progress=false", "trainer.checkpoint_every=30",
            "trainer.log_every=5", "trainer.accelerator=cpu", "runtime.threads=1"]
    cfg = load_config(None, base + list(SL), pipeline.DEFAULTS)
    root = tmp_path_factory.mktemp("sltrain_full")
    full = pipeline.train(cfg, root / "full")
    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.train(cfg, root / "cut", callbacks=[_Interrupt()])
    cut_ckpt = torch.load(root / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = pipeline.train(cfg, root / "cut")
    return {"cfg": cfg, "root": root, "full": full, "resumed": resumed, "cut_ckpt": cut_ckpt}


def test_trains_the_replaced_layers_and_beats_zero_shot(runs):
    m = runs["full"]
    assert m["method"] == "sltrain_full" and m["steps"] == 60
    assert m["adapted_layers"] == 8  # c_fc and c_proj of 2 blocks in each of the 2 towers
    assert m["accuracy"] >= m["zero_shot_accuracy"] + 0.15, m
    model, _ = pipeline.build_classifier(runs["cfg"], ["a", "b"])
    pretrained = model.clip.get_submodule(MLP).weight
    d_out, d_in = pretrained.shape
    per_layer = 4 * (d_in + d_out) + int(0.05 * d_in * d_out) + d_out  # B, A, S, bias
    assert m["trainable_parameters"] < 8 * (d_in * d_out + d_out)  # not the dense layers
    assert m["trainable_parameters"] >= per_layer  # (layers differ in shape: a lower bound)


def test_checkpoint_holds_the_replaced_layers_and_their_support_never_dense_weights(runs):
    state = runs["cut_ckpt"]["state_dict"]
    prefix = f"model.clip.{MLP}"
    for k in ("A", "B", "values", "support", "bias"):
        assert f"{prefix}.{k}" in state, k
    assert state[f"{prefix}.support"].dtype == torch.int32
    layers = {k.rsplit(".", 1)[0] for k in state}
    assert len(layers) == 8 and all(".mlp.c_" in k for k in layers)  # nothing frozen
    assert not [k for k in state if k.endswith(".weight")]  # no dense weight at all


def test_resume_after_crash_is_bitwise_the_uninterrupted_run(runs):
    root, full, resumed = runs["root"], runs["full"], runs["resumed"]
    assert resumed["resumed_from_step"] == 30 and full["resumed_from_step"] == 0
    drop = ("resumed_from_step",)
    assert {k: v for k, v in resumed.items() if k not in drop} == {
        k: v for k, v in full.items() if k not in drop
    }
    a = load_file(root / "full" / "adapter" / "adapter.safetensors")
    b = load_file(root / "cut" / "adapter" / "adapter.safetensors")
    assert a.keys() == b.keys() and len(a) == 40
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = (root / "cut" / "logs" / "metrics.csv").read_text()
    assert log == (root / "full" / "logs" / "metrics.csv").read_text()


def test_eval_and_predict_reload_the_run_and_reproduce_it(runs):
    run = runs["root"] / "full"
    again = pipeline.evaluate(run, {})
    for k in ("accuracy", "zero_shot_accuracy", "heldout_zero_shot_after"):
        if k in runs["full"]:
            assert again[k] == pytest.approx(runs["full"][k]), k
    model = pipeline.adapted_model(run)
    saved = load_file(run / "adapter" / "adapter.safetensors")
    layer = model.get_submodule(MLP)
    assert isinstance(layer, SLTrainLinear)
    assert torch.equal(layer.support, saved[f"{MLP}.support"])  # the support is the saved one
    assert torch.equal(layer.values.detach(), saved[f"{MLP}.values"])
    meta = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert meta["method"] == "sltrain_full" and meta["config"]["density"] == 0.05


def test_predict_uses_the_replaced_layers_and_the_rebuilt_base(runs):
    from lorakit.vision.clip.predict import predict_file

    out = predict_file(runs["root"] / "full", Path(__file__).parents[3] / "demos" / "samples" / "red_circle.png", k=4)
    assert out["method"] == "sltrain_full"
    assert out["adapted"] != out["zero_shot"]  # the zero-shot side is the pretrained model


def test_merged_model_densifies_to_the_same_function(runs):
    run = runs["root"] / "full"
    replaced = pipeline.adapted_model(run).eval()
    dense = pipeline.merged_model(run).eval()
    lin = dense.get_submodule(MLP)
    assert type(lin) is nn.Linear
    assert not [m for m in dense.modules() if isinstance(m, SLTrainLinear)]
    torch.testing.assert_close(lin.weight, replaced.get_submodule(MLP).weight.detach())
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(dense.encode_image(images), replaced.encode_image(images),
                                   rtol=1e-4, atol=1e-5)


def test_squeeze_refuses_a_replacement_run(runs):
    from lorakit.apps.cli.squeeze import squeeze_run

    with pytest.raises(ValueError, match="sltrain_full run: its weights were replaced"):
        squeeze_run(runs["root"] / "full", 2)


def test_a_folder_without_the_support_is_refused(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["root"] / "full", run)
    path = run / "adapter" / "adapter.safetensors"
    tensors = load_file(path)
    del tensors[f"{MLP}.support"]
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match=r"lacks .*c_fc\.support"):
        pipeline.adapted_model(run)


def test_a_checkpoint_without_the_support_does_not_resume(runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["root"] / "full", run, ignore=shutil.ignore_patterns("metrics.json"))
    ckpt = run / "checkpoints" / "last.ckpt"
    c = torch.load(ckpt, weights_only=True)
    del c["state_dict"][f"model.clip.{MLP}.support"]
    torch.save(c, ckpt)
    with pytest.raises(ValueError, match="support"):
        pipeline.train(runs["cfg"], run)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (("adapter.density=1.5",), "density"),
        (("adapter.density=0",), "density"),
        (("adapter.r=0",), "r must be a positive integer"),
        (("adapter.init=zeros",), "init must be one of"),
        (("adapter.alpha=-1",), "alpha must be positive"),
        (("adapter.energy=0.9",), r"unknown field\(s\) \['energy'\]"),
        (("adapter.dropout=0.1",), r"unknown field\(s\) \['dropout'\]"),
        (("adapter.modules=[q,k,v]",), r"adapter.modules=\[mlp\]"),
        (("backbone.quantize={bits: 4}",), "quantized codes are frozen"),
    ],
)
def test_bad_values_are_one_line_and_write_nothing(overrides, match, shapes_root, tmp_path):
    cfg = load_config(None, [f"data.root={shapes_root}", *SL, *overrides], pipeline.DEFAULTS)
    with pytest.raises(ValueError, match=match) as e:
        pipeline.train(cfg, tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_the_light_check_and_the_other_pipelines(shapes_root):
    from lorakit.apps.pipelines import pipeline_config

    cfg = load_config(None, [f"data.root={shapes_root}", *SL, "adapter.density=2"],
                      pipeline.DEFAULTS)
    pipeline_config("clip").check(cfg)  # kinds only: the value is the core config's to refuse
    bad = load_config(None, [f"data.root={shapes_root}", *SL, "adapter.init=1"], pipeline.DEFAULTS)
    with pytest.raises(ValueError, match="adapter.init must be a string"):
        pipeline_config("clip").check(bad)
    for name in ("cod", "asr"):
        light = pipeline_config(name)
        cfg = load_config(None, ["adapter.method=sltrain_full"], light.DEFAULTS)
        with pytest.raises(ValueError, match="only the clip and ood pipelines run it"):
            light.check(cfg)
