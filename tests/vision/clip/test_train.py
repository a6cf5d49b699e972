import pytest
import torch

from lorakit.core import inject, methods, named_hosts
from lorakit.vision.clip.build import BackboneConfig, load_backbone
from lorakit.vision.clip.classifier import ClipClassifier
from lorakit.vision.clip.datasets import Normalize, StepBatches, augment
from lorakit.vision.clip.train import adapter_config, lr_factor


def _hosts(cfg):
    model = load_backbone(BackboneConfig()).model
    inject(model, cfg)
    return {n: sorted(h.slots()) for n, h in named_hosts(model)}


def test_default_adapter_is_the_clip_lora_recipe():
    cfg = adapter_config({"method": "lora", "r": 2, "alpha": 1.0, "dropout": 0.25})
    assert (cfg.r, cfg.alpha, cfg.dropout, cfg.slices) == (2, 1.0, 0.25, ("q", "k", "v"))
    hosts = _hosts(cfg)
    assert sorted(hosts) == [
        "transformer.resblocks.0.attn",
        "transformer.resblocks.1.attn",
        "visual.transformer.resblocks.0.attn",
        "visual.transformer.resblocks.1.attn",
    ]
    assert all(slots == ["k", "q", "v"] for slots in hosts.values())


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            {"towers": "vision"},
            {"visual.transformer.resblocks.0.attn", "visual.transformer.resblocks.1.attn"},
        ),
        (
            {"towers": "text", "modules": ["v", "o"]},
            {"transformer.resblocks.0.attn", "transformer.resblocks.1.attn"},
        ),
        (
            {"towers": "vision", "modules": ["mlp"]},
            {
                f"visual.transformer.resblocks.{i}.mlp.{m}"
                for i in (0, 1)
                for m in ("c_fc", "c_proj")
            },
        ),
    ],
)
def test_towers_and_modules_select_layers(section, expected):
    hosts = _hosts(adapter_config({"method": "block_lora", "r": 2, **section}))
    assert set(hosts) == expected
    if section.get("modules") == ["v", "o"]:
        assert all(slots == ["o", "v"] for slots in hosts.values())


def test_adapter_config_errors():
    with pytest.raises(ValueError, match="adapter.towers"):
        adapter_config({"towers": "audio"})
    with pytest.raises(ValueError, match="adapter.modules"):
        adapter_config({"modules": ["ffn"]})
    with pytest.raises(ValueError, match="unknown method"):
        adapter_config({"method": "dora"})
    with pytest.raises(ValueError, match="unknown field"):
        adapter_config({"method": "lora", "n_blocks": 4})


def test_lr_schedule():
    assert lr_factor(0, 100, 0, "cosine") == 1.0
    assert lr_factor(50, 100, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 0, "cosine") == pytest.approx(0.0)
    assert lr_factor(4, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(70, 100, 0, "constant") == 1.0


def test_step_batches_are_a_function_of_seed_and_step():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 8, 8).contiguous()
    labels = torch.arange(10)
    norm = Normalize((0, 0, 0), (1, 1, 1))
    b = StepBatches(images, labels, 4, 6, seed=3, normalize=norm, train_augment=False)
    first = [y for _, y in b]
    assert len(first) == 6 and all(len(y) == 4 for y in first)
    # each pass over the pool sees every image once: steps 0-1 and half of 2 cover 10 images
    assert sorted(torch.cat(first)[:10].tolist()) == list(range(10))
    b.start_step = 2
    assert torch.equal(next(iter(b))[1], first[2])
    other = StepBatches(images, labels, 4, 6, seed=4, normalize=norm, train_augment=False)
    assert not all(torch.equal(a, c) for a, (_, c) in zip(first, other, strict=True))


def test_augment_is_seeded_and_keeps_shape():
    x = torch.randint(0, 255, (5, 3, 16, 16), dtype=torch.uint8)
    a = augment(x, torch.Generator().manual_seed(0))
    b = augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, x)


def test_text_head_follows_the_text_adapters():
    bb = load_backbone(BackboneConfig())
    clf = ClipClassifier(bb.model, bb.tokenizer, ["red circle", "blue star"], ("a photo of a {}.",))
    before = clf.class_head().clone()
    inject(bb.model, adapter_config({"method": "lora", "r": 2, "towers": "text"}))
    for m in methods(bb.model):
        torch.nn.init.normal_(m.B, std=0.5)
    assert clf.text_adapted
    head = clf.class_head()
    assert head.requires_grad and not torch.allclose(head, before)
    logits = clf(torch.randn(3, 3, 32, 32))
    logits.sum().backward()
    assert all(m.B.grad is not None for m in methods(bb.model))


def test_text_head_follows_text_layers_replaced_by_sltrain():
    from lorakit.core import SLTrainWeightsConfig, replace_weights

    bb = load_backbone(BackboneConfig())
    clf = ClipClassifier(bb.model, bb.tokenizer, ["red circle", "blue star"], ("a photo of a {}.",))
    clf.class_head()  # cached while nothing in the text tower trains
    assert not clf.text_adapted
    pattern = r"transformer\.resblocks\.\d+\.mlp\.(c_fc|c_proj)"  # the text tower's only
    names = replace_weights(bb.model, SLTrainWeightsConfig(r=4, density=0.05, targets=(pattern,)))
    assert names and not any(n.startswith("visual.") for n in names)
    assert clf.text_adapted
    clf(torch.randn(3, 3, 32, 32)).sum().backward()
    for n in names:
        assert bb.model.get_submodule(n).values.grad is not None
