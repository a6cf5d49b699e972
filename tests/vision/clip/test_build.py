import time

import pytest
import torch

from lorakit.vision.clip.build import TINY_CONFIGS, BackboneConfig, load_backbone


def test_tiny_config_is_a_real_open_clip_model():
    import open_clip

    bb = load_backbone(BackboneConfig(name="lorakit-tiny-vit"))
    assert isinstance(bb.model, open_clip.CLIP)
    assert bb.image_size == TINY_CONFIGS["lorakit-tiny-vit"]["vision_cfg"]["image_size"]
    attn = [n for n, m in bb.model.named_modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert len(attn) == 4  # 2 vision + 2 text blocks
    tokens = bb.tokenizer(["a photo of a red circle."])
    assert bb.model.encode_text(tokens).shape == (1, 32)
    assert bb.model.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 32)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_loads_a_local_open_clip_checkpoint(tmp_path, suffix):
    torch.manual_seed(123)
    src = load_backbone(BackboneConfig(name="lorakit-tiny-vit")).model
    path = tmp_path / f"tiny{suffix}"
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    if suffix == ".pt":
        torch.save(
            {"state_dict": {f"module.{k}": v for k, v in state.items()}}, path
        )  # training-checkpoint form
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    torch.manual_seed(999)  # a different random init, overwritten by the file
    loaded = load_backbone(BackboneConfig(name="lorakit-tiny-vit", checkpoint=str(path))).model
    for (k, a), (_, b) in zip(src.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_offline_pretrained_tag_fails_fast_naming_the_file():
    start = time.monotonic()
    with pytest.raises(ValueError) as e:
        load_backbone(BackboneConfig(name="ViT-B-16", pretrained="openai", offline=True))
    assert time.monotonic() - start < 10
    msg = str(e.value)
    assert "timm/vit_base_patch16_clip_224.openai" in msg and "backbone.checkpoint" in msg


def test_bad_backbone_inputs():
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Z-99'"):
        load_backbone(BackboneConfig(name="ViT-Z-99"))
    with pytest.raises(ValueError, match="not a known tag"):
        load_backbone(BackboneConfig(name="ViT-B-16", pretrained="no-such-tag"))
    with pytest.raises(ValueError, match="does not exist"):
        load_backbone(
            BackboneConfig(name="lorakit-tiny-vit", checkpoint="/nonexistent/weights.bin")
        )
