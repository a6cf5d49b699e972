"""The offline CLIP stand-in: pretrained, composes unseen attribute pairs, rebuildable."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from lorakit.data.captions import COMBOS, class_images, classname, matches
from lorakit.vision.clip import standin
from lorakit.vision.clip.build import BackboneConfig, load_backbone
from lorakit.vision.clip.datasets import Normalize
from lorakit.vision.clip.prompts import TEMPLATES, zero_shot_head


def zero_shot(bb, pairs, per_class=20, style="plain") -> float:
    x, y = class_images(pairs, per_class, bb.image_size, seed=11, style=style)
    x = Normalize(bb.mean, bb.std)(torch.from_numpy(x).permute(0, 3, 1, 2))
    with torch.no_grad():
        head = zero_shot_head(bb.model, bb.tokenizer, [classname(p) for p in pairs],
                              TEMPLATES["clip"])
        pred = (F.normalize(bb.model.encode_image(x), dim=-1) @ head.T).argmax(-1)
    return float((pred == torch.from_numpy(y)).float().mean())


def test_unseen_pairs_never_reach_pretraining():
    seen = set(COMBOS.pretrain)
    groups = (COMBOS.heldout, COMBOS.task, COMBOS.val)
    assert not seen & set(COMBOS.unseen()) and len(set(COMBOS.unseen())) == 24
    assert all(not set(a) & set(b) for i, a in enumerate(groups) for b in groups[i + 1:])
    colours, shapes_ = {c for c, _ in seen}, {s for _, s in seen}
    assert all(c in colours and s in shapes_ for c, s in COMBOS.unseen())


def test_stand_in_is_the_default_and_zero_shot_on_unseen_pairs_is_well_above_chance():
    torch.manual_seed(0)
    bb = load_backbone(BackboneConfig())  # default: lorakit-tiny-vit + lorakit-shapes
    for pairs in (COMBOS.heldout, COMBOS.unseen()):
        assert zero_shot(bb, pairs) >= 3 / len(pairs), len(pairs)
    random_bb = load_backbone(BackboneConfig(pretrained=None))
    assert zero_shot(random_bb, COMBOS.heldout) < 2 / len(COMBOS.heldout)


def test_builder_still_trains_and_writes_a_loadable_file(tmp_path):
    spec = replace(standin.BuildSpec(), steps=25, pool=384, batch_size=64, lr=2e-3)
    digest, losses = standin.build(tmp_path / "s.safetensors", spec)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3, losses  # 4.5 -> 3.9 when it trains
    assert digest == standin.sha256(tmp_path / "s.safetensors")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no leftovers
    state = standin.load_state(tmp_path / "s.safetensors")
    model = load_backbone(BackboneConfig(pretrained=None)).model
    model.load_state_dict(state)  # every tensor present, shapes right


def test_shipped_file_matches_its_checksum():
    assert standin.SHIPPED.is_file() and standin.SHA256 is not None
    assert standin.sha256(standin.SHIPPED) == standin.SHA256
    assert standin.weights_path() == standin.SHIPPED


def test_damaged_shipped_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    monkeypatch.setattr(standin, "SHIPPED", bad)
    with pytest.raises(ValueError, match="does not match its recorded sha256"):
        standin.weights_path()


def test_contrastive_targets_follow_what_the_caption_names():
    keys = torch.tensor([[0, 2, 0], [0, -1, 0], [0, 3, 0], [1, 2, 0]]).numpy()
    m = matches(keys)
    assert m[0].tolist() == [True, True, False, False]  # bg 2 fits "no bg named", not bg 3
    assert m[2, 1] and not m[2, 0] and not m[3, 0]


def test_stand_in_tag_needs_its_own_architecture():
    with pytest.raises(ValueError, match="exists for lorakit-tiny-vit only"):
        load_backbone(BackboneConfig(name="lorakit-tiny-vit-64"))


def test_without_the_shipped_file_it_is_built_once_into_the_cache(tmp_path, monkeypatch):
    small = replace(standin.BuildSpec(), steps=3, pool=64, batch_size=16)
    monkeypatch.setattr(standin, "SHIPPED", tmp_path / "absent.safetensors")
    monkeypatch.setattr(standin, "BuildSpec", lambda: small)
    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path / "cache"))
    path = standin.weights_path()
    assert path.parent == tmp_path / "cache" / "clip" and path.is_file()

    def no_rebuild(*a, **k):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(standin, "build", no_rebuild)
    assert standin.weights_path() == path
