"""Damaged or mismatched adapter folders: one ``ValueError`` line naming the file and the
field, and the model is left as it was (issue 22)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lorakit.core import adapter_names, inject, load_adapter, make_config, save_adapter


def saved(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4))
    inject(model, make_config("lora", r=2, targets=("0", "1")))
    return save_adapter(model, tmp_path / "adapter")


def fresh():
    return nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4))


def edit_config(folder, change):
    path = folder / "adapter_config.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def one_line_error(folder, *needles):
    model = fresh()
    with pytest.raises(ValueError) as info:
        load_adapter(model, folder)
    msg = str(info.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    assert adapter_names(model) == [] and isinstance(model[0], nn.Linear)


def test_empty_or_half_weights(tmp_path):
    """(A 40-byte cut is tests/core/test_errors.py's.)"""
    folder = saved(tmp_path)
    weights = folder / "adapter.safetensors"
    for cut in (0, weights.stat().st_size // 2):
        weights.write_bytes(weights.read_bytes()[:cut] if cut else b"")
        one_line_error(folder, str(weights), "truncated")
        folder = saved(tmp_path)


def test_foreign_config(tmp_path):
    """(A truncated config is tests/core/test_errors.py's.)"""
    folder = saved(tmp_path)
    cfg = folder / "adapter_config.json"
    cfg.write_text("[1, 2]")
    one_line_error(folder, str(cfg), "not a lorakit adapter config")


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (lambda m: m.pop("layers"), ["field 'layers'"]),
        (lambda m: m.update(config="r=2"), ["field 'config'"]),
        (lambda m: m["layers"][0].update(slots={"w": [8]}), ["layers[0]"]),
        (lambda m: m.update(method="dora"), ["bad method or config", "dora"]),
        (lambda m: m["config"].update(rank=2), ["bad method or config", "rank"]),
        (lambda m: m["layers"][0].update(ranks=[2]), ["'ranks'"]),
    ],
)
def test_malformed_config_fields(tmp_path, change, needles):
    folder = saved(tmp_path)
    edit_config(folder, change)
    one_line_error(folder, "adapter_config.json", *needles)


def test_config_and_weights_that_disagree(tmp_path):
    """The config says r=2, the tensors were written for r=3 (or lost one)."""
    folder = saved(tmp_path)
    weights = folder / "adapter.safetensors"
    tensors = load_file(weights)
    grown = {k: torch.zeros(3, v.shape[1]) if v.shape[0] == 2 else torch.zeros(v.shape[0], 3)
             for k, v in tensors.items()}  # fmt: skip
    save_file(grown, weights)
    one_line_error(folder, str(weights), "shape")
    save_file(dict(list(tensors.items())[1:]), weights)
    one_line_error(folder, str(weights), "missing")


def test_a_killed_save_leaves_no_temp_file_after_the_next(tmp_path):
    folder = saved(tmp_path)
    stale = folder / ".adapter.safetensors.k1ll3d.tmp"
    stale.write_bytes(b"")
    saved(tmp_path)
    assert not stale.exists()
