"""Comp-LoRA on open_clip ViT-B-16 at its real size (random weights): the adapter file is
the size of what trains (the SVD basis U_k, 15.7 M floats at energy 0.9, is recomputed at
load from the base), and the loaded model gives the saved model's outputs."""

import pytest
import torch

from lorakit.core import inject, load_adapter, save_adapter
from lorakit.vision.clip.train import adapter_config

pytestmark = pytest.mark.slow  # two ViT-B-16s and 72 SVDs of 512-768 wide weights: ~30 s


def test_vit_b_16_comp_lora_file_holds_what_trains(tmp_path):
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    section = {"method": "comp_lora", "r": 4, "alpha": 4.0, "towers": "both",
               "modules": ["q", "k", "v"], "energy": 0.9}
    inject(model, adapter_config(section))
    trainable = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for p in trainable:
            p.normal_(0, 0.01)
    folder = save_adapter(model, tmp_path / "adapter")
    size = (folder / "adapter.safetensors").stat().st_size
    floats = sum(p.numel() for p in trainable)
    assert floats == 368_640 and size <= 4 * floats + (64 << 10)
    fresh = open_clip.create_model("ViT-B-16", pretrained=None)
    fresh.load_state_dict(base)
    load_adapter(fresh, folder)
    image, text = torch.randn(1, 3, 224, 224), torch.randint(0, 49408, (1, 77))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh.encode_image(image), model.encode_image(image))
        torch.testing.assert_close(fresh.encode_text(text), model.encode_text(text))
