"""Buffers the base weights determine (a method's ``from_base``: Comp-LoRA's SVD basis of
W0) are never written to adapter files: a load recomputes them from the base and refuses a
base other than the one the file's sha256 names; files written before (holding them) load."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lorakit.core import adapter_names, inject, load_adapter, make_config, save_adapter
from lorakit.core.adapters import named_methods
from lorakit.core.contract import perturb
from lorakit.core.io import _entries
from lorakit.core.method import weight_digest
from lorakit.core.squeeze import adapter_deltas, squeeze_adapter


def base(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 32), nn.GELU(), nn.Linear(32, 16)).eval()


def trained(side: str = "both") -> nn.Module:
    model = base()
    inject(model, make_config("comp_lora", r=3, energy=0.6, side=side, targets=("0", "2")))
    perturb(model)
    return model


def save_old_way(model: nn.Module, folder):
    """An adapter folder as lorakit wrote it before ``from_base``: U_k / V_k in the file,
    no ``base_sha256`` in the config."""
    save_adapter(model, folder)
    tensors = load_file(str(folder / "adapter.safetensors"))
    for key, (_, attr, t) in _entries(model, "default").items():
        if attr in ("U_k", "V_k"):
            tensors[key] = t.detach().clone().contiguous()
    save_file(tensors, str(folder / "adapter.safetensors"))
    path = folder / "adapter_config.json"
    meta = json.loads(path.read_text())
    for layer in meta["layers"]:
        layer.pop("base_sha256")
    path.write_text(json.dumps(meta))
    return folder


X = torch.randn(5, 24, generator=torch.Generator().manual_seed(3))


def test_file_holds_no_basis_and_names_the_base_it_needs(tmp_path):
    model = trained()
    folder = save_adapter(model, tmp_path / "a")
    keys = set(load_file(str(folder / "adapter.safetensors")))
    assert keys == {f"{n}.adapters.weight.{t}" for n in ("0", "2") for t in ("A", "B")}
    meta = json.loads((folder / "adapter_config.json").read_text())
    for layer in meta["layers"]:
        w = base()[int(layer["name"])].weight
        assert layer["base_sha256"] == {"weight": weight_digest(w)}
    assert all(m.U_k.shape[1] > 0 and m.V_k.shape[1] > 0 for _, _, m in named_methods(model))


@pytest.mark.parametrize("side", ["output", "input", "both"])
def test_load_recomputes_the_basis_and_gives_the_same_outputs(tmp_path, side):
    model = trained(side)
    folder = save_adapter(model, tmp_path / "a")
    fresh = base()
    load_adapter(fresh, folder)
    for (_, _, m), (_, _, n) in zip(named_methods(model), named_methods(fresh), strict=True):
        assert torch.equal(m.U_k, n.U_k) and torch.equal(m.V_k, n.V_k)
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), model(X), rtol=0, atol=1e-6)


def test_another_base_is_refused_naming_the_layer(tmp_path):
    folder = save_adapter(trained(), tmp_path / "a")
    other = base()
    with torch.no_grad():
        other[2].weight[0, 0] += 1e-3
    with pytest.raises(ValueError) as info:
        load_adapter(other, folder)
    msg = str(info.value)
    assert "\n" not in msg and "layer '2'" in msg and "trained on" in msg, msg
    assert adapter_names(other) == [] and isinstance(other[2], nn.Linear)  # left as it was
    load_adapter(base(), folder)  # the right base still loads


def test_file_written_the_old_way_loads_its_own_basis(tmp_path):
    model = trained()
    folder = save_old_way(model, tmp_path / "old")
    assert any(k.endswith(".U_k") for k in load_file(str(folder / "adapter.safetensors")))
    fresh = base()
    load_adapter(fresh, folder)
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), model(X), rtol=0, atol=1e-6)
    # no checksum to check, and the file's basis wins over one computed from this base
    other = base(seed=5)
    load_adapter(other, folder)
    for (_, _, m), (_, _, n) in zip(named_methods(model), named_methods(other), strict=True):
        assert torch.equal(m.U_k, n.U_k) and torch.equal(m.V_k, n.V_k)


def test_squeeze_reads_old_files_alone_and_new_ones_from_the_model(tmp_path):
    """An old file rebuilds on a stand-in base with another spectrum (its U_k has fewer
    columns than the stand-in's would); a new one needs the adapted model."""
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(32, 24))
    with torch.no_grad():  # a base whose energy sits in 3 directions
        lin[0].weight.copy_(torch.randn(24, 3) @ torch.randn(3, 32))
    inject(lin, make_config("comp_lora", r=4, targets=("0",)))
    perturb(lin)
    ((_, _, m),) = named_methods(lin)
    assert m.U_k.shape[1] <= 3
    _, deltas, _ = adapter_deltas(save_old_way(lin, tmp_path / "old"))
    assert torch.allclose(deltas["0"], m.delta_weight().detach(), atol=1e-5)
    new = save_adapter(lin, tmp_path / "new")
    with pytest.raises(ValueError, match="recomputes .'U_k', 'V_k'. from the base weights"):
        adapter_deltas(new)
    report = squeeze_adapter(new, tmp_path / "r2", 2, adapted=lambda: lin)
    _, deltas, _ = adapter_deltas(new, adapted=lambda: lin)
    assert torch.allclose(deltas["0"], m.delta_weight().detach(), atol=1e-6)
    assert report["rank"] == 2
    assert "base_sha256" not in json.loads((tmp_path / "r2" / "adapter_config.json").read_text())[
        "layers"][0]
    fresh = nn.Sequential(nn.Linear(32, 24))
    fresh.load_state_dict({k.replace(".base", ""): v for k, v in lin.state_dict().items()
                           if ".adapters." not in k})
    load_adapter(fresh, tmp_path / "r2")  # a plain LoRA: no checksum to trip over
