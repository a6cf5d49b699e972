"""The quantized layer's kernel: pure torch on the CPU (whatever is installed), bitsandbytes
chosen only for 4-bit NF on CUDA, one-line errors for a backend that is not installed, and
the codes handed to bitsandbytes in its own layout (checked against its format, written
out here, since the package is not a dependency)."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lorakit.core import quantize
from lorakit.core.quant import QuantLinear, backends, nf_table
from lorakit.core.quant.options import quant_options


def _model(d_in=128):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d_in, 32), nn.GELU(), nn.Linear(32, 8))


@pytest.mark.parametrize("fake_installed", [False, True])
def test_pure_torch_is_selected_on_cpu(monkeypatch, fake_installed):
    monkeypatch.setattr(backends, "installed", lambda name: fake_installed)
    model = _model()
    quantize(model, bits=4, group_size=64)
    x = torch.randn(5, 128)
    y = model(x)
    layer = model[0]
    assert isinstance(layer, QuantLinear) and layer.active_backend == "torch"
    assert torch.allclose(model[0](x), F.linear(x, layer.weight, layer.bias), atol=1e-5)
    assert y.shape == (5, 8)


def test_bitsandbytes_only_for_4bit_nf_on_cuda(monkeypatch):
    monkeypatch.setattr(backends, "installed", lambda name: True)
    pick = backends.select_backend
    assert pick("auto", "cuda", 4, "nf", 64, 128) == "bitsandbytes"
    assert pick("bitsandbytes", "cuda:0", 4, "nf", 128, 256) == "bitsandbytes"
    assert pick("auto", "cpu", 4, "nf", 64, 128) == "torch"
    assert pick("torch", "cuda", 4, "nf", 64, 128) == "torch"
    assert pick("auto", "cuda", 3, "nf", 64, 128) == "torch"
    assert pick("auto", "cuda", 4, "int", 64, 128) == "torch"
    assert pick("auto", "cuda", 4, "nf", 32, 128) == "torch"  # not a bitsandbytes block size
    monkeypatch.setattr(backends, "installed", lambda name: False)
    assert pick("auto", "cuda", 4, "nf", 64, 128) == "torch"


def test_backend_not_installed_is_one_line(monkeypatch):
    monkeypatch.setattr(backends, "installed", lambda name: False)
    with pytest.raises(ValueError, match=r"^quantize: backend 'bitsandbytes' is not installed") as e:
        quantize(_model(), bits=4, backend="bitsandbytes")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^backbone\.quantize: backend 'bitsandbytes' is not"):
        quant_options({"bits": 4, "backend": "bitsandbytes"})
    with pytest.raises(ValueError, match="backend 'torchao' is not supported"):
        quant_options({"bits": 4, "backend": "torchao"})
    with pytest.raises(ValueError, match="backend must be one of"):
        quantize(_model(), bits=4, backend="cuda")
    assert quant_options({"bits": 4, "backend": "torch"}).backend == "torch"


def test_codes_in_the_bitsandbytes_layout(monkeypatch):
    """bitsandbytes' NF4 format: the tensor flattened row-major, two codes a byte with the
    first in the high nibble, one float32 absmax per block, value = NF4[code] * absmax."""
    fake = types.ModuleType("bitsandbytes.functional")
    fake.QuantState = lambda **kw: types.SimpleNamespace(**kw)
    fake.get_4bit_type = lambda kind, device=None: nf_table(4).to(device)
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))
    monkeypatch.setitem(sys.modules, "bitsandbytes.functional", fake)
    model = _model()
    quantize(model, bits=4, group_size=64)
    layer = model[0]
    packed, state = backends.bnb_state(layer, torch.float16)
    assert packed.shape == (32 * 128 // 2, 1) and packed.dtype == torch.uint8
    flat = packed.reshape(-1)
    codes = torch.stack([flat >> 4, flat & 0x0F], 1).reshape(-1).long()  # high nibble first
    values = state.code[codes].reshape(-1, state.blocksize) * state.absmax[:, None]
    assert state.quant_type == "nf4" and state.blocksize == 64 and state.dtype == torch.float16
    assert tuple(state.shape) == (32, 128)
    assert torch.equal(values.reshape(32, 128), layer.weight)
