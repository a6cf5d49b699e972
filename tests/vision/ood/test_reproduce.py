"""The OOD recipe end to end on tiny fake ImageNet and DomainNet trees in the real layouts
(tiny ViT stand-in instead of the torchvision checkpoint)."""

import pytest
from PIL import Image

from lorakit.data.shift import render
from lorakit.vision.ood import reproduce

SHAPES = ["circle", "square", "triangle"]
WNIDS = ["n01440764", "n01443537", "n01484850"]
TINY = {"image_size": 32, "patch_size": 8, "width": 32, "depth": 1, "heads": 2}
OPTS = dict(kind="tiny_vit", tiny=TINY, steps=2, batch_size=4, lr=1e-3)


def _write(folder, names, style, per_class, seed, classes=SHAPES):
    imgs, ys = render(classes, per_class, style, 32, seed)
    for k, (img, y) in enumerate(zip(imgs, ys, strict=True)):
        (folder / names[y]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / names[y] / f"{k:03d}.png")


def imagenet_tree(root):
    _write(root / "imagenet" / "train", WNIDS, "photo", 4, 0)
    _write(root / "imagenet" / "val", WNIDS, "photo", 2, 1)
    _write(root / "imagenet-v2", ["0", "1", "2"], "photo", 2, 2)  # the release's index folders
    _write(root / "imagenet-sketch" / "sketch", WNIDS, "sketch", 2, 3)
    _write(root / "imagenet-r", WNIDS[:2], "painting", 2, 4, SHAPES[:2])  # a class subset
    _write(root / "imagenet-a", WNIDS[1:], "clutter", 2, 5, SHAPES[1:])
    return root


def domainnet_tree(root):
    dn = root / "domainnet"
    for d, style in (("real", "photo"), ("sketch", "sketch"), ("painting", "painting")):
        _write(dn / d, SHAPES, style, 4, len(d))
        files = sorted(p.relative_to(dn) for p in (dn / d).rglob("*.png"))
        label = {c: i for i, c in enumerate(SHAPES)}
        lines = [f"{f.as_posix()} {label[f.parts[1]]}" for f in files]
        (dn / f"{d}_train.txt").write_text("\n".join(lines[::2]))
        (dn / f"{d}_test.txt").write_text("\n".join(lines[1::2]))
    return root


def test_imagenet_recipe_runs_on_a_fake_tree(tmp_path):
    root = imagenet_tree(tmp_path / "data")
    reproduce.check(root, **OPTS)
    m = reproduce.run(root, tmp_path / "out", method="largo", **OPTS)
    assert set(m["ood"]) == set(reproduce.IMAGENET_SETS) and m["method"] == "largo"
    assert 0 <= m["ood_accuracy"] <= 1 and len(m["wise"]) == 3
    cfg = reproduce.config(root, tmp_path / "out", **OPTS)
    v2 = next(o for o in cfg["data"]["ood"] if o["name"] == "imagenet-v2")
    assert v2["class_map"] == dict(zip(["0", "1", "2"], WNIDS, strict=True))


def test_domainnet_recipe_links_the_official_splits(tmp_path):
    root = domainnet_tree(tmp_path / "data")
    opts = dict(OPTS, dataset="domainnet", sets=["sketch", "painting"])
    m = reproduce.run(root, tmp_path / "out", method="lora", **opts)
    assert set(m["ood"]) == {"sketch", "painting"}
    train = tmp_path / "out" / "splits" / "real_train"
    assert sorted(p.name for p in train.iterdir()) == sorted(SHAPES)
    assert sum(1 for _ in train.rglob("*.png")) == 6  # every other of 12 images


def test_first_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"^OOD recipe: .*nowhere is missing$"):
        reproduce.check(tmp_path / "nowhere", **OPTS)
    root = imagenet_tree(tmp_path / "data")
    with pytest.raises(ValueError, match=r"checkpoints/vit_b_16-c867db91\.pth is missing"):
        reproduce.check(root)  # the real default: torchvision ViT-B/16 from a local file
    with pytest.raises(ValueError, match=r"imagenet-sketch/sketch is missing"):
        for p in sorted((root / "imagenet-sketch" / "sketch").rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        (root / "imagenet-sketch" / "sketch").rmdir()
        reproduce.check(root, **OPTS)
    dn = domainnet_tree(tmp_path / "dn")
    victim = sorted((dn / "domainnet" / "painting").rglob("*.png"))[1]
    victim.unlink()
    with pytest.raises(
        ValueError, match=rf"{victim.name} \(listed in painting_test.txt:1\) is missing"
    ):
        reproduce.check(dn, dataset="domainnet", sets=["sketch", "painting"], **OPTS)
