"""Plain LoRA equals Hugging Face PEFT's LoRA given the same A and B; PEFT files round-trip."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from lorakit.core import Host, export_peft, import_peft, inject, make_config, methods

QKV = ("q", "k", "v")

peft = pytest.importorskip("peft")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(24, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x):
        h = self.fc(x)
        return self.attn(h, h, h, need_weights=False)[0]


def _peft_model(base, targets):
    cfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)
    return peft.get_peft_model(copy.deepcopy(base), cfg)


def _random_peft_weights(pm):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_linear_matches_peft():
    torch.manual_seed(0)
    base = Net().eval()
    pm = _peft_model(base, ["fc"]).eval()
    _random_peft_weights(pm)
    ours = copy.deepcopy(base)
    inject(ours, make_config("lora", r=4, alpha=8, targets=("fc",)))
    layer = pm.base_model.model.fc
    with torch.no_grad():
        m = methods(ours)[0]
        m.A.copy_(layer.lora_A["default"].weight)
        m.B.copy_(layer.lora_B["default"].weight)
    x = torch.randn(3, 5, 24)
    torch.testing.assert_close(ours(x), pm(x), rtol=0, atol=1e-6)


def test_multihead_attention_matches_peft():
    torch.manual_seed(0)
    base = Net().eval()
    pm = _peft_model(base, ["attn"]).eval()
    _random_peft_weights(pm)
    layer = pm.base_model.model.attn
    a = layer.lora_A["default"].weight  # (r, E)
    b = layer.lora_B["default"].weight  # (3E, r): one update over the whole in_proj
    ours = copy.deepcopy(base)
    # PEFT always adapts out_proj too, and (peft 0.21.2) adds that delta twice in forward
    # (merged into the weight and again by out_proj.merge); compare the q/k/v path only.
    with torch.no_grad():
        layer.base_layer.out_proj.lora_B["default"].weight.zero_()
    inject(ours, make_config("lora", r=4, alpha=8, targets=("attn",), slices=("q", "k", "v")))
    # PEFT's single (3E x E) update B A equals our three slices sharing A with B split by rows
    with torch.no_grad():
        for i, m in enumerate(methods(ours)):
            m.A.copy_(a)
            m.B.copy_(b[i * 16 : (i + 1) * 16])
    x = torch.randn(3, 5, 24)
    torch.testing.assert_close(ours(x), pm(x), rtol=0, atol=1e-6)


def test_peft_files_round_trip(tmp_path):
    torch.manual_seed(0)
    base = Net().eval()
    ours = copy.deepcopy(base)
    inject(ours, make_config("lora", r=4, alpha=8, targets=("fc",)))
    with torch.no_grad():
        methods(ours)[0].B.normal_()
    export_peft(ours, tmp_path)
    # PEFT itself loads what we export ...
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(loaded(x), ours(x), rtol=1e-5, atol=1e-5)
    # ... and we load it back
    again = copy.deepcopy(base)
    import_peft(again, tmp_path)
    torch.testing.assert_close(again(x), ours(x), rtol=0, atol=1e-6)


# ---------------------------------------------------------------- refusals and patterns


class Tower(nn.Module):
    """Linear layers, a fused qkv Linear, attention and a head: every exportable layer."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(24, 16)
        self.qkv = nn.Linear(16, 48)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.fc(x)
        q, k, v = self.qkv(h).chunk(3, -1)
        h = h + q * k.sigmoid() + v
        return self.head(self.attn(h, h, h, need_weights=False)[0])


def _saved_peft(tmp_path, **kw):
    torch.manual_seed(0)
    base = Tower().eval()
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["fc", "qkv"], **kw)
    pm = peft.get_peft_model(copy.deepcopy(base), cfg).eval()
    _random_peft_weights(pm)
    pm.save_pretrained(tmp_path)
    return base, pm


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"use_dora": True}, r"use_dora=True \(DoRA"),
        ({"bias": "lora_only"}, r"bias='lora_only' \(trained biases\)"),
        ({"init_lora_weights": "pissa"}, "init_lora_weights='pissa' changes the base weights"),
    ],
)
def test_import_refuses_what_plain_lora_cannot_represent(tmp_path, kw, message):
    base, _ = _saved_peft(tmp_path, **kw)
    model = copy.deepcopy(base)
    with pytest.raises(ValueError, match=message):
        import_peft(model, tmp_path)
    assert not any(isinstance(m, Host) for m in model.modules())  # nothing half-loaded


def test_import_refuses_unknown_fields(tmp_path):
    base, _ = _saved_peft(tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    meta["lora_magic"] = 3
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown PEFT field 'lora_magic'=3"):
        import_peft(copy.deepcopy(base), tmp_path)


def test_import_honours_rank_alpha_patterns_and_modules_to_save(tmp_path):
    base, pm = _saved_peft(
        tmp_path,
        rank_pattern={"qkv": 2},
        alpha_pattern={"fc": 3},
        modules_to_save=["head"],
    )
    with torch.no_grad():  # a trained head (saved in full by PEFT)
        pm.base_model.model.head.modules_to_save["default"].weight.normal_()
    pm.save_pretrained(tmp_path)
    ours = copy.deepcopy(base)
    import_peft(ours, tmp_path)
    assert {m.r for m in methods(ours)} == {4, 2}
    x = torch.randn(2, 5, 24)
    assert (pm(x) - base(x)).abs().max() > 1e-2
    torch.testing.assert_close(ours(x), pm(x), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- export of attention / fused qkv


def test_export_attention_and_fused_qkv_as_rank_3r_pairs(tmp_path):
    torch.manual_seed(0)
    base = Tower().eval()
    ours = copy.deepcopy(base)
    cfg = make_config("lora", r=2, alpha=4.0, targets=("fc", "qkv", "attn"), slices=QKV)
    inject(ours, cfg)
    with torch.no_grad():  # a different A per slice: only the block form is exact
        for m in methods(ours):
            m.A.normal_()
            m.B.normal_(0, 0.3)
    export_peft(ours, tmp_path)
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    a = saved["base_model.model.attn.lora_A.weight"]
    b = saved["base_model.model.attn.lora_B.weight"]
    assert a.shape == (6, 16) and b.shape == (48, 6)  # rank 3r
    assert torch.equal(b[:16, 2:], torch.zeros(16, 4))  # B = blockdiag(B_q, B_k, B_v)
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    x = torch.randn(2, 5, 24)
    assert (ours(x) - base(x)).abs().max() > 1e-2
    torch.testing.assert_close(loaded(x), ours(x), rtol=0, atol=1e-5)
    again = copy.deepcopy(base)
    import_peft(again, tmp_path)  # and back: each slice gets the shared A and its B rows
    torch.testing.assert_close(again(x), ours(x), rtol=0, atol=1e-5)


def test_export_refuses_what_peft_would_compute_differently(tmp_path):
    model = Tower()
    inject(model, make_config("lora", r=2, targets=("attn",), slices=("q", "o")))
    with pytest.raises(ValueError, match="applies a MultiheadAttention out_proj LoRA twice"):
        export_peft(model, tmp_path)
    model = Tower()
    inject(model, make_config("block_lora", r=2, n_blocks=2, targets=("fc",)))
    with pytest.raises(ValueError, match="needs a plain LoRA adapter"):
        export_peft(model, tmp_path)
