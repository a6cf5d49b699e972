"""A PEFT folder given to lorakit's loader, or a lorakit folder given to PEFT's (or to
``import_peft``), fails with one line that names the call to use instead."""

import copy

import pytest
import torch
from torch import nn

from lorakit.core import export_peft, import_peft, inject, load_adapter, make_config, save_adapter

peft = pytest.importorskip("peft")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))


def _lorakit_folder(path):
    model = _net()
    inject(model, make_config("lora", r=2, target_modules=["0"], lora_alpha=4))
    return save_adapter(model, path), model


def test_load_adapter_on_a_peft_folder_names_import_peft(tmp_path):
    _, model = _lorakit_folder(tmp_path / "ours")
    export_peft(model, tmp_path / "peft")
    with pytest.raises(ValueError, match=r"is a PEFT adapter .*import_peft\(model, ") as e:
        load_adapter(_net(), tmp_path / "peft")
    assert "\n" not in str(e.value)
    import_peft(_net(), tmp_path / "peft")  # the call it names works


def test_import_peft_on_a_lorakit_folder_names_load_adapter(tmp_path):
    folder, _ = _lorakit_folder(tmp_path / "ours")
    with pytest.raises(ValueError, match=r"is a lorakit adapter.*load_adapter\(model, "):
        import_peft(_net(), folder)
    with pytest.raises(ValueError, match="adapter_config.json is missing"):
        import_peft(_net(), tmp_path / "nothing")


def test_peft_loader_on_a_lorakit_folder_says_export_peft(tmp_path):
    """PEFT's own error (peft 0.21.2 fails on the unknown ``peft_type``) carries the hint."""
    folder, _ = _lorakit_folder(tmp_path / "ours")
    with pytest.raises(KeyError, match=r"export_peft\(model, dir\)"):
        peft.PeftModel.from_pretrained(copy.deepcopy(_net()), str(folder))
    load_adapter(_net(), folder)  # lorakit still reads its own folder
