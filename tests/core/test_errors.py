"""Bad input gets a clear ValueError naming what is wrong."""

import json

import pytest
import torch
from torch import nn

from lorakit.core import inject, load_adapter, make_config, merge, save_adapter
from lorakit.core.zoo import GridAttention, MHABlock, TinyCNN, TokenMLP


def test_unknown_method_and_field_list_valid_ones():
    with pytest.raises(ValueError, match="valid methods: lora, block_lora"):
        make_config("dora")
    with pytest.raises(ValueError, match="unknown field.*rank.*valid fields: r, alpha"):
        make_config("lora", rank=4)


def test_rank_larger_than_layer_leaves_the_model_untouched():
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 8))
    with pytest.raises(ValueError, match=r"rank r=16 is larger than layer 1 allows \(weight 8x64"):
        inject(model, make_config("lora", r=16, targets=("0", "1")))
    assert isinstance(model[0], nn.Linear) and all(p.requires_grad for p in model.parameters())


def test_block_lora_needs_divisible_d_in():
    with pytest.raises(
        ValueError, match="layer fc1 has d_in=32 input channels, not divisible by n_blocks=5"
    ):
        inject(TokenMLP(), make_config("block_lora", r=2, n_blocks=5, targets=("fc1",)))


def test_fora_without_grid_and_wrong_token_count():
    model = TokenMLP()
    inject(model, make_config("fora", r=2, targets=("fc2",)))
    with pytest.raises(ValueError, match="layer fc2 needs a spatial grid"):
        model(torch.randn(1, 5, 32))
    model = MHABlock()
    inject(model, make_config("fora", r=2, grid=(2, 2), targets=("attn",)))
    with pytest.raises(ValueError, match=r"got 6 tokens, but grid=\(2, 2\) with prefix_tokens=0"):
        model(torch.randn(1, 6, 32))


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match="target pattern 'nope' matches no adaptable layer"):
        inject(TokenMLP(), make_config("lora", targets=("fc1", "nope")))
    with pytest.raises(ValueError, match="no targets given"):
        inject(TokenMLP(), make_config("lora"))


def test_mha_out_proj_must_be_targeted_through_attention():
    with pytest.raises(ValueError, match="target 'attn' with 'o' in slices"):
        inject(MHABlock(), make_config("lora", r=2, targets=("attn.out_proj",)))


def test_same_adapter_name_twice_is_an_error(tmp_path):
    model = TokenMLP()
    inject(model, make_config("lora", r=2, targets=("fc1",)))
    with pytest.raises(ValueError, match="already has an adapter named 'default'"):
        inject(model, make_config("lora", r=2, targets=("fc2",)))
    save_adapter(model, tmp_path)
    with pytest.raises(ValueError, match=r"already has an adapter named 'default'.*name=\.\.\."):
        load_adapter(model, tmp_path)


def test_merge_fora_raises():
    model = GridAttention()
    inject(model, make_config("fora", r=2, targets=("qkv",)))
    with pytest.raises(ValueError, match="fora is not mergeable"):
        merge(model)


def test_grouped_conv_is_skipped_with_a_report_line():
    net = nn.Sequential(nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 8, 1))
    report = inject(net, make_config("lora", r=2, targets=(r"\d",)))
    assert report.modules == ["1"]
    assert "skipped 0: grouped convolution (groups=2) not adapted" in str(report)
    with pytest.raises(ValueError, match="match no layer lorakit can adapt: 0: grouped"):
        inject(nn.Sequential(nn.Conv2d(8, 8, 3, groups=8)), make_config("lora", targets=("0",)))


def test_load_into_wrong_base_names_layer_and_shapes(tmp_path):
    model = TokenMLP(c=32, hidden=64)
    inject(model, make_config("lora", r=2, targets=("fc1", "fc2")))
    save_adapter(model, tmp_path)
    with pytest.raises(
        ValueError, match=r"layer 'fc1' slot weight expects weight 64x32, base has 48x32"
    ):
        load_adapter(TokenMLP(c=32, hidden=48), tmp_path)
    with pytest.raises(ValueError, match=r"layer 'fc1' is not in the base model"):
        load_adapter(TinyCNN(), tmp_path)
    with pytest.raises(ValueError, match="adapter_config.json is missing"):
        load_adapter(TokenMLP(), tmp_path / "nowhere")


def test_load_detects_tampered_tensors(tmp_path):
    model = TokenMLP()
    inject(model, make_config("lora", r=2, targets=("fc1",)))
    save_adapter(model, tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    meta["config"]["r"] = 3
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(
        ValueError, match=r"adapter tensor fc1.adapters.weight.A has shape \(2, 32\)"
    ):
        load_adapter(TokenMLP(), tmp_path)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="r must be a positive integer"):
        make_config("lora", r=0)
    with pytest.raises(ValueError, match="side must be one of"):
        make_config("comp_lora", side="left")
    with pytest.raises(ValueError, match="component must be one of"):
        make_config("largo", component="middle")
    with pytest.raises(ValueError, match="comp_lora: protecting k=32"):
        inject(TokenMLP(), make_config("comp_lora", r=2, k=32, targets=("fc1",)))


def _saved_adapter(tmp_path):
    model = nn.Sequential(nn.Linear(8, 8))
    inject(model, make_config("lora", r=2, targets=("0",)))
    save_adapter(model, tmp_path)
    return tmp_path


def test_truncated_adapter_weights_are_one_line_and_leave_the_model_as_it_was(tmp_path):
    folder = _saved_adapter(tmp_path)
    weights = folder / "adapter.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    fresh = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(ValueError, match="adapter.safetensors are unreadable") as e:
        load_adapter(fresh, folder)
    assert "\n" not in str(e.value)
    assert isinstance(fresh[0], nn.Linear)  # nothing was injected


def test_truncated_adapter_config_is_one_line(tmp_path):
    folder = _saved_adapter(tmp_path)
    cfg = folder / "adapter_config.json"
    cfg.write_text(cfg.read_text()[:25])
    with pytest.raises(ValueError, match="adapter_config.json is unreadable") as e:
        load_adapter(nn.Sequential(nn.Linear(8, 8)), folder)
    assert "\n" not in str(e.value)


def test_a_peft_folder_names_the_import_call(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    (tmp_path / "adapter.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"is a PEFT adapter .*load it with lorakit.core.import_peft"):
        load_adapter(nn.Sequential(nn.Linear(8, 8)), tmp_path)


def test_make_config_accepts_peft_field_names():
    ours = make_config("lora", r=4, alpha=16.0, dropout=0.1, rslora=True, targets=("q", "v"))
    peft = make_config(
        "lora", r=4, lora_alpha=16.0, lora_dropout=0.1, use_rslora=True, target_modules=["q", "v"]
    )
    assert peft == ours
    assert make_config("vera", target_modules="q").targets == ("q",)
    with pytest.raises(ValueError, match="is given twice"):
        make_config("lora", alpha=2.0, lora_alpha=4.0)
