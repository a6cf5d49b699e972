import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lorakit.core import named_hosts
from lorakit.vision.sam.build import BackboneConfig, build_sam, load_checkpoint
from lorakit.vision.sam.fusion import FrequencyFusion
from lorakit.vision.sam.model import FUSION_MODULE, AdapterSpec, Prompt, SamCOD

TINY = BackboneConfig(img_size=64, embed_dim=32, depth=2, heads=2, window=2, dim=32)


def _inputs(n=2):
    images = torch.rand(n, 3, 64, 64) * 255
    prompts = [
        Prompt(
            points=torch.tensor([[20.0, 30.0, 1.0], [5.0, 5.0, 0.0]]),
            box=torch.tensor([10.0, 10.0, 40.0, 50.0]),
        )
    ] * n
    return images, prompts


@pytest.mark.parametrize("method", ["fora", "lora"])
def test_adapters_on_qkv_and_decoder_only_they_train(method):
    model = SamCOD(build_sam(TINY), AdapterSpec(method=method, r=2))
    names = [n for n, _ in named_hosts(model.sam)]
    assert [n for n in names if n.startswith("image_encoder")] == [
        "image_encoder.blocks.0.attn.qkv",
        "image_encoder.blocks.1.attn.qkv",
    ]
    assert any("cross_attn_token_to_image.k_proj" in n for n in names)
    images, prompts = _inputs()
    logits, feats = model(images, prompts)
    assert logits.shape == (2, 1, 64, 64) and feats.shape == (2, 4, 16, 16)
    logits.mean().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert grads <= trainable
    assert all(".adapters." in n or ".fusion." in n for n in trainable)
    assert any(".fusion." in n for n in grads)


def test_adapted_model_starts_as_sam():
    images, prompts = _inputs()
    base = SamCOD(build_sam(TINY), AdapterSpec(method="none"))
    fora = SamCOD(build_sam(TINY), AdapterSpec(method="fora"))
    with torch.no_grad():
        assert torch.allclose(base(images, prompts)[0], fora(images, prompts)[0], atol=1e-5)


def test_fusion_identity_at_init_and_changes_after_update():
    f = FrequencyFusion(4, (1, 2, 4))
    x = torch.randn(2, 4, 16, 16)
    assert torch.equal(f(x), x)
    torch.nn.init.normal_(f.fuse.weight)
    assert not torch.allclose(f(x), x)


def test_save_load_roundtrip(tmp_path):
    images, prompts = _inputs(1)
    model = SamCOD(build_sam(TINY), AdapterSpec(method="fora", r=2))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
        want = model(images, prompts)[0]
    model.save(tmp_path / "adapter")
    assert not (tmp_path / "adapter" / "fusion.safetensors").exists()
    keys = load_file(tmp_path / "adapter" / "adapter.safetensors")
    assert any(k.startswith(f"modules_to_save.{FUSION_MODULE}.") for k in keys)
    loaded = SamCOD.load(build_sam(TINY), AdapterSpec(method="fora", r=2), tmp_path / "adapter")
    with torch.no_grad():
        assert torch.allclose(loaded(images, prompts)[0], want, atol=1e-5)


def test_legacy_folder_with_fusion_file_still_loads(tmp_path):
    """A folder written before modules_to_save: the fusion head in fusion.safetensors and
    the adapter file without it (what runs and the hub's cached runs hold)."""
    images, prompts = _inputs(1)
    model = SamCOD(build_sam(TINY), AdapterSpec(method="fora", r=2))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
        want = model(images, prompts)[0]
    folder = model.save(tmp_path / "adapter")
    prefix = f"modules_to_save.{FUSION_MODULE}."
    tensors = load_file(folder / "adapter.safetensors")
    head = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    save_file(
        {k: v for k, v in tensors.items() if not k.startswith(prefix)},
        folder / "adapter.safetensors",
    )
    save_file(head, folder / "fusion.safetensors")
    meta = json.loads((folder / "adapter_config.json").read_text())
    meta.pop("modules_to_save")
    meta["config"].pop("modules_to_save", None)
    (folder / "adapter_config.json").write_text(json.dumps(meta))
    loaded = SamCOD.load(build_sam(TINY), AdapterSpec(method="fora", r=2), folder)
    with torch.no_grad():
        assert torch.allclose(loaded(images, prompts)[0], want, atol=1e-5)
    (folder / "fusion.safetensors").unlink()
    with pytest.raises(ValueError, match="carries no fusion head"):
        SamCOD.load(build_sam(TINY), AdapterSpec(method="fora", r=2), folder)


def test_checkpoints_load_safely_and_fail_clearly(tmp_path):
    sam = build_sam(TINY)
    torch.save(sam.state_dict(), tmp_path / "tiny.pth")
    other = build_sam(BackboneConfig(**{**TINY.__dict__, "seed": 1}))
    load_checkpoint(other, tmp_path / "tiny.pth", "tiny")
    assert torch.equal(
        other.image_encoder.patch_embed.proj.weight, sam.image_encoder.patch_embed.proj.weight
    )
    with pytest.raises(ValueError, match=r"sam_vit_b_01ec64\.pth"):
        build_sam(BackboneConfig(name="vit_b", checkpoint=str(tmp_path / "missing.pth")))
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(
            build_sam(BackboneConfig(img_size=64, embed_dim=48, heads=2, window=2)),
            tmp_path / "tiny.pth",
            "tiny",
        )
    (tmp_path / "bad.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read SAM checkpoint"):
        load_checkpoint(sam, tmp_path / "bad.pth", "tiny")
    with pytest.raises(ValueError, match="backbone.name"):
        build_sam(BackboneConfig(name="vit_x"))


def test_prompt_required():
    model = SamCOD(build_sam(TINY), AdapterSpec(method="none"))
    with pytest.raises(ValueError, match="needs a prompt"):
        model(torch.zeros(1, 3, 64, 64), [Prompt()])
