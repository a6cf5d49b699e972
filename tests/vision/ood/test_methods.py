"""WiSE-FT endpoints are exact; class maps for subset OOD sets; effective robustness."""

import copy
import json

import pytest
import torch

from lorakit.core import named_hosts
from lorakit.vision.ood import pipeline
from lorakit.vision.ood.data import ImageFolderSet, folder_labels
from lorakit.vision.ood.evaluate import accuracy
from lorakit.vision.ood.methods import MethodConfig, interpolate, plain_state, prepare, wise_model
from lorakit.vision.ood.robustness import effective_robustness, fit_line


def _perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))


@pytest.mark.parametrize("method", ["largo", "lora", "full"])
def test_wise_endpoints_are_exact(tiny_cfg, method):
    cfg = tiny_cfg(method)
    desc = pipeline.resolve_data(cfg["data"])
    built = pipeline.build_model(cfg, desc)
    model = built.model
    pretrained = copy.deepcopy(model)
    prepare(model, MethodConfig(**cfg["adapter"]), built.targets)
    _perturb(model)  # stands in for training: every trainable tensor moves
    assert (method == "full") or named_hosts(model)
    x = torch.rand(6, 3, 16, 16)
    pre, ft = pretrained.state_dict(), plain_state(model)
    merged = copy.deepcopy(pretrained)
    merged.load_state_dict(ft)
    with torch.no_grad():
        w0, w1 = wise_model(pretrained, pre, ft, 0.0), wise_model(pretrained, pre, ft, 1.0)
        assert torch.equal(w0(x), pretrained.eval()(x))
        assert torch.equal(w1(x), merged.eval()(x))
        assert torch.allclose(
            w1(x), model.eval()(x), rtol=1e-4, atol=1e-4
        )  # merged == adapter forward
        half = wise_model(pretrained, pre, ft, 0.5)(x)
        assert not torch.equal(half, w0(x)) and not torch.equal(half, w1(x))
    for k, v in interpolate(pre, ft, 1.0).items():
        assert torch.equal(v, ft[k]), k


def test_wise_rejects_bad_input():
    a = {"w": torch.zeros(2)}
    with pytest.raises(ValueError, match="alpha"):
        interpolate(a, a, 1.5)
    with pytest.raises(ValueError, match="differ in keys"):
        interpolate(a, {"v": torch.zeros(2)}, 0.5)


def test_class_map_for_subset_sets(tmp_path):
    classes = ["circle", "square", "triangle"]
    root = tmp_path / "subset"
    for alias in ("n01", "n03"):
        (root / alias).mkdir(parents=True)
    (root / "class_map.json").write_text(json.dumps({"n01": "circle", "n03": "triangle"}))
    assert folder_labels(root, classes, {"n01": "circle", "n03": "triangle"}) == {
        "n01": 0,
        "n03": 2,
    }
    with pytest.raises(ValueError, match="add a class_map"):
        folder_labels(root, classes, None)
    with pytest.raises(ValueError, match="not an ID class"):
        folder_labels(root, classes, {"n01": "circle", "n03": "hexagon"})
    with pytest.raises(ValueError, match="not in the class map"):
        folder_labels(root, classes, {"n01": "circle"})


def test_subset_set_restricts_predictions(tiny_cfg):
    cfg = tiny_cfg("linear_probe")
    desc = pipeline.resolve_data(cfg["data"])
    spec = desc["ood"]["sketch_subset"]
    ds = ImageFolderSet(spec["root"], desc["classes"], 16, spec["class_map"])
    assert ds.present == [0, 2]  # circle, triangle under aliases s0000, s0002

    class Always(torch.nn.Module):  # always predicts class 3 unless restricted
        def forward(self, x):
            return torch.tensor([0.0, 0.0, 1.0, 5.0]).expand(len(x), 4)

    assert accuracy(Always(), ds) == 0.0
    assert accuracy(Always(), ds, ds.present) == pytest.approx(0.5)  # argmax over {0, 2} -> 2


def test_effective_robustness_line():
    line = fit_line([(0.6, 0.3), (0.8, 0.5), (0.9, 0.62)])
    assert line.slope > 0
    on = line.predict(0.7)
    assert effective_robustness(line, 0.7, on) == pytest.approx(0.0, abs=1e-12)
    assert effective_robustness(line, 0.7, on + 0.1) == pytest.approx(0.1)
    assert effective_robustness(None, 0.7, 0.5) is None


def test_open_clip_tower_with_zero_shot_head():
    """An open_clip image tower (tiny config) gets a zero-shot head from the class names;
    LARGO attaches to its attention and MLP layers."""
    from lorakit.vision.ood.build import BackboneConfig, build_backbone

    classes = ["circle", "square", "star"]
    built = build_backbone(BackboneConfig(kind="open_clip", model="lorakit-tiny-vit"), classes)
    assert built.head_source == "zeroshot" and built.model.head.weight.shape[0] == 3
    norms = built.model.head.weight.norm(dim=-1)
    assert torch.allclose(norms, norms[0].expand(3))  # unit text embeddings times the logit scale
    prepare(built.model, MethodConfig(method="largo", r=2, alpha=2), built.targets)
    assert named_hosts(built.model)
    assert built.model(torch.rand(2, 3, built.image_size, built.image_size)).shape == (2, 3)


def test_conv_stem_tiny_vit_and_missing_torchvision_checkpoint(tmp_path):
    from lorakit.vision.ood.build import BackboneConfig, build_backbone

    built = build_backbone(
        BackboneConfig(conv_stem=True, image_size=16, patch_size=8, width=32, depth=1, heads=2),
        ["a", "b"],
    )
    prepare(built.model, MethodConfig(method="lora", r=2, alpha=2), built.targets)
    assert built.model(torch.rand(2, 3, 16, 16)).shape == (2, 2)
    with pytest.raises(ValueError, match="does not exist"):
        build_backbone(
            BackboneConfig(
                kind="torchvision", arch="resnet18", checkpoint=str(tmp_path / "r18.pth")
            ),
            ["a"],
        )
