"""Named adapters, modules_to_save, inference-mode loading, parent / compiled save-load."""

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lorakit.core import (
    active_adapters,
    adapter_names,
    delete_adapter,
    disable_adapter,
    inject,
    load_adapter,
    make_config,
    merge,
    methods,
    save_adapter,
    set_adapter,
    trainable_parameters,
    unmerge,
)
from lorakit.core.contract import perturb
from lorakit.core.zoo import TokenMLP


def mlp(seed=0):
    torch.manual_seed(seed)
    return TokenMLP().eval()


def two_adapters():
    model = mlp()
    inject(model, make_config("lora", r=2, targets=("fc1", "fc2")))
    inject(model, make_config("block_lora", r=2, n_blocks=4, targets=("fc1",)), name="blk")
    set_adapter(model, ["default", "blk"])
    perturb(model)
    set_adapter(model, "default")
    return model


def test_two_methods_on_one_layer_switch_and_sum():
    model, x = two_adapters(), torch.randn(2, 5, 32)
    assert adapter_names(model) == ["default", "blk"]
    with disable_adapter(model):
        base = model(x)
    out_a = model(x)
    set_adapter(model, "blk")
    out_b = model(x)
    assert (out_a - out_b).abs().max() > 1e-3  # switching changes the output
    set_adapter(model, ["default", "blk"])
    # fc1 sees both deltas, fc2 only LoRA's: compare with the summed dense update
    fc1 = model.fc1
    dw = sum(m.delta_weight() for m in methods(model) if m.slot_name == "fc1")
    h = torch.nn.functional.linear(x, fc1.base.weight + dw, fc1.base.bias)
    expected = model.fc2(model.act(h))
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert (model(x) - out_a).abs().max() > 1e-3 and (model(x) - base).abs().max() > 1e-3


def test_only_active_adapters_train_and_merge():
    model = two_adapters()
    ids = {id(p) for p in trainable_parameters(model)}
    assert ids == {id(p) for m in methods(model, "default") for p in m.parameters()}
    set_adapter(model, "blk")
    ids = {id(p) for p in trainable_parameters(model)}
    assert ids == {id(p) for m in methods(model, "blk") for p in m.parameters()}
    x = torch.randn(2, 5, 32)
    before, w0 = model(x), model.fc1.base.weight.clone()
    merge(model)  # the active adapter only
    assert model.fc1.merged_names == ["blk"] and model.fc2.merged_names == []
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\['blk'\] are merged into the weights"):
        set_adapter(model, "default")
    unmerge(model)
    torch.testing.assert_close(model.fc1.base.weight, w0, rtol=0, atol=1e-6)


def test_delete_adapter_unwraps_layers_left_without_one():
    model = two_adapters()
    delete_adapter(model, "default")
    assert adapter_names(model) == ["blk"]
    assert isinstance(model.fc2, nn.Linear)  # only LoRA adapted fc2
    assert active_adapters(model) == ["blk"]  # the remaining adapter takes over
    with pytest.raises(ValueError, match="no adapter named 'nope'"):
        set_adapter(model, "nope")


def test_disable_adapter_is_a_context_manager_and_a_call():
    model, x = two_adapters(), torch.randn(2, 5, 32)
    adapted = model(x)
    base = TokenMLP()
    base.load_state_dict({k.replace(".base", ""): v for k, v in model.state_dict().items()
                          if "adapters" not in k})
    with disable_adapter(model):
        torch.testing.assert_close(model(x), base.eval()(x))
    torch.testing.assert_close(model(x), adapted)
    disable_adapter(model)
    torch.testing.assert_close(model(x), base(x))


def test_save_and_load_by_name(tmp_path):
    model, x = two_adapters(), torch.randn(2, 5, 32)
    set_adapter(model, "blk")
    want = model(x)
    save_adapter(model, tmp_path / "blk", name="blk")
    meta = json.loads((tmp_path / "blk" / "adapter_config.json").read_text())
    assert meta["method"] == "block_lora" and [la["name"] for la in meta["layers"]] == ["fc1"]
    fresh = mlp()
    inject(fresh, make_config("lora", r=2, targets=("fc1",)))
    load_adapter(fresh, tmp_path / "blk", name="other")
    set_adapter(fresh, "other")
    assert torch.equal(fresh(x), want)
    with pytest.raises(ValueError, match=r"no adapter named 'zzz' in the model; it has"):
        save_adapter(model, tmp_path / "z", name="zzz")


def test_inference_load_is_deterministic_and_trainable_load_trains(tmp_path):
    model = mlp()
    inject(model, make_config("lora", r=2, dropout=0.25, targets=("fc1", "fc2")))
    perturb(model)
    save_adapter(model, tmp_path)
    x = torch.randn(4, 5, 32)
    fresh = mlp().eval()
    load_adapter(fresh, tmp_path)
    assert torch.equal(fresh(x), fresh(x))  # dropout off
    assert not list(trainable_parameters(fresh))
    fresh.train()  # e.g. to train another adapter beside it: the loaded one stays in eval
    assert torch.equal(fresh(x), fresh(x))
    again = mlp().train()
    load_adapter(again, tmp_path, trainable=True)
    assert trainable_parameters(again).numel == 2 * (2 * (32 + 64))
    assert not torch.equal(again(x), again(x))  # still training: dropout on


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = mlp(), nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.body(x))


def test_save_from_a_parent_and_from_a_compiled_model(tmp_path):
    parent = Wrapper().eval()
    inject(parent.body, make_config("lora", r=2, targets=("fc1",)))
    perturb(parent.body)
    x = torch.randn(2, 5, 32)
    save_adapter(parent, tmp_path / "parent")  # saved from the parent of the adapted module
    fresh = Wrapper().eval()
    fresh.load_state_dict({k: v for k, v in parent.state_dict().items() if "adapters" not in k}
                          | {"body.fc1.weight": parent.body.fc1.base.weight,
                             "body.fc1.bias": parent.body.fc1.base.bias}, strict=False)
    load_adapter(fresh, tmp_path / "parent")
    torch.testing.assert_close(fresh(x), parent(x), rtol=0, atol=1e-6)

    compiled = torch.compile(parent, backend="eager")
    save_adapter(compiled, tmp_path / "compiled")
    meta = json.loads((tmp_path / "compiled" / "adapter_config.json").read_text())
    assert [la["name"] for la in meta["layers"]] == ["body.fc1"]  # no _orig_mod.
    target = Wrapper().eval()
    target.load_state_dict(fresh.state_dict(), strict=False)
    target.body.fc1.load_state_dict(fresh.body.fc1.base.state_dict())
    load_adapter(torch.compile(target, backend="eager"), tmp_path / "compiled")
    torch.testing.assert_close(target(x), parent(x), rtol=0, atol=1e-6)


def test_modules_to_save_trains_saves_and_loads_a_head(tmp_path):
    model = Wrapper().eval()
    cfg = make_config("lora", r=2, targets=("fc1",), modules_to_save=("head",))
    report = inject(model, cfg)
    assert "head" in str(report) and report.trainable == 2 * (32 + 64) + 3 * 32 + 3
    original = model.head.original.weight.clone()
    assert all(p.requires_grad for p in model.head.copies["default"].parameters())
    assert not any(p.requires_grad for p in model.head.original.parameters())
    perturb(model)
    x = torch.randn(2, 5, 32)
    want = model(x)
    assert torch.equal(model.head.original.weight, original)  # the copy trains, not the original
    with disable_adapter(model):  # disabled: the original head
        base_head = model(x)
    assert (base_head - want).abs().max() > 1e-3
    save_adapter(model, tmp_path)
    fresh = Wrapper().eval()
    fresh.body.load_state_dict(model.body.state_dict(), strict=False)
    fresh.body.fc1.load_state_dict(model.body.fc1.base.state_dict())
    fresh.head.load_state_dict(model.head.original.state_dict())
    load_adapter(fresh, tmp_path)
    torch.testing.assert_close(fresh(x), want, rtol=0, atol=1e-6)


def test_v01_adapter_folder_still_loads(tmp_path):
    """A folder as v0.1 wrote it: version 1, no modules_to_save / fused fields."""
    model, x = mlp(), torch.randn(2, 5, 32)
    inject(model, make_config("lora", r=2, targets=("fc1",)))
    perturb(model)
    m = methods(model)[0]
    meta = {
        "format": "lorakit-adapter", "version": 1, "method": "lora",
        "config": {"r": 2, "alpha": 8.0, "dropout": 0.0, "targets": ["fc1"],
                   "slices": ["q", "k", "v"], "rslora": False},
        "layers": [{"name": "fc1", "host": "linear", "slots": {"weight": [64, 32]}}],
    }
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    save_file({"fc1.adapters.weight.A": m.A.detach().clone(),
               "fc1.adapters.weight.B": m.B.detach().clone()},
              str(tmp_path / "adapter.safetensors"))
    fresh = mlp()
    load_adapter(fresh, tmp_path)
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=1e-6)


def test_failed_load_leaves_the_model_as_it_was(tmp_path):
    model = mlp()
    inject(model, make_config("lora", r=2, targets=("fc1",)))
    save_adapter(model, tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    meta["config"]["r"] = 3
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    fresh = mlp()
    with pytest.raises(ValueError, match="has shape"):
        load_adapter(fresh, tmp_path)
    assert adapter_names(fresh) == [] and isinstance(fresh.fc1, nn.Linear)
