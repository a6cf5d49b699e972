import pytest
import torch

from lorakit.vision.clip.build import BackboneConfig, load_backbone
from lorakit.vision.clip.prompts import (
    build_prompts,
    class_embeddings,
    resolve_templates,
    zero_shot_head,
)


def test_build_prompts_is_class_major():
    prompts = build_prompts(["red circle", "blue_star"], ("a photo of a {}.", "a {} drawing."))
    assert prompts == [
        "a photo of a red circle.",
        "a red circle drawing.",
        "a photo of a blue star.",
        "a blue star drawing.",
    ]


def test_resolve_templates():
    assert resolve_templates("clip") == ("a photo of a {}.",)
    assert resolve_templates(["x {} y"]) == ("x {} y",)
    with pytest.raises(ValueError, match="unknown template set"):
        resolve_templates("nope")
    with pytest.raises(ValueError, match="exactly one"):
        resolve_templates(["no placeholder"])


def test_class_embeddings_average_templates_then_normalise():
    feats = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0], [1.0, 1.0]])
    emb = class_embeddings(feats, 2)
    assert emb.shape == (2, 2)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2))
    assert torch.allclose(emb[0], torch.tensor([0.5**0.5, 0.5**0.5]))


def test_zero_shot_head_matches_manual_encoding():
    bb = load_backbone(BackboneConfig())
    templates = ("a photo of a {}.", "a {}.")
    head = zero_shot_head(bb.model, bb.tokenizer, ["red circle", "blue star"], templates)
    with torch.no_grad():
        manual = bb.model.encode_text(bb.tokenizer(["a photo of a blue star.", "a blue star."]))
    manual = torch.nn.functional.normalize(
        torch.nn.functional.normalize(manual, dim=-1).mean(0), dim=0
    )
    assert head.shape == (2, 32)
    assert torch.allclose(head[1], manual, atol=1e-5)
