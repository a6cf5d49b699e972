import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from lorakit.data import fewshot


def _tree(root: Path, counts: dict[str, int]) -> Path:
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 20 % 255, 0, 0)).save(root / cls / f"{i:03d}.png")
    return root


def test_read_image_folder(tmp_path):
    split = fewshot.read_image_folder(_tree(tmp_path, {"red_circle": 3, "blue_square": 2}))
    assert split.classnames == ["blue square", "red circle"]
    assert Counter(split.labels()) == {0: 2, 1: 3}
    fixed = fewshot.read_image_folder(tmp_path, ["red circle", "blue square"])
    assert fixed.classnames == ["red circle", "blue square"] and Counter(fixed.labels()) == {
        0: 3,
        1: 2,
    }
    with pytest.raises(ValueError, match="no class folder"):
        fewshot.read_image_folder(tmp_path, ["green star"])
    with pytest.raises(ValueError, match="does not exist"):
        fewshot.read_image_folder(tmp_path / "nope")


def test_k_shot_sampler_is_correct_and_deterministic(tmp_path):
    split = fewshot.read_image_folder(_tree(tmp_path, {"a": 10, "b": 7, "c": 12}))
    s1 = fewshot.sample_k_shot(split, 4, seed=1)
    assert Counter(s1.labels()) == {0: 4, 1: 4, 2: 4}
    assert set(s1.items) <= set(split.items)
    assert len(set(s1.items)) == 12
    assert fewshot.sample_k_shot(split, 4, seed=1).items == s1.items
    shuffled = fewshot.Split(list(reversed(split.items)), split.classnames)
    assert fewshot.sample_k_shot(shuffled, 4, seed=1).items == s1.items  # order independent
    assert fewshot.sample_k_shot(split, 4, seed=2).items != s1.items
    only = fewshot.sample_k_shot(split, 2, seed=0, labels=[2])
    assert Counter(only.labels()) == {2: 2}
    with pytest.raises(ValueError, match="'b' has 7 training images, fewer than shots=8"):
        fewshot.sample_k_shot(split, 8, seed=0)
    with pytest.raises(ValueError, match="positive integer"):
        fewshot.sample_k_shot(split, 0, seed=0)


def test_base_novel_and_subset(tmp_path):
    assert fewshot.base_novel_labels(5) == ([0, 1, 2], [3, 4])
    split = fewshot.read_image_folder(_tree(tmp_path, {"a": 1, "b": 2, "c": 3}))
    sub = fewshot.subset(split, [2, 0])
    assert sub.classnames == ["c", "a"]
    assert Counter(sub.labels()) == {0: 3, 1: 1}


def test_coop_split_round_trip_and_errors(tmp_path):
    root = _tree(tmp_path / "images", {"cat": 2, "dog": 3})
    split = fewshot.read_image_folder(root)
    path = fewshot.write_coop_split(
        tmp_path / "split_toy.json", {"train": split, "test": split}, root
    )
    raw = json.loads(path.read_text())
    assert raw["val"] == [] and raw["train"][0] == ["cat/000.png", 0, "cat"]
    parsed = fewshot.read_coop_split(path, root)
    assert parsed["train"].classnames == ["cat", "dog"]
    assert parsed["test"].items == split.items
    bad = tmp_path / "split_bad.json"
    bad.write_text(
        json.dumps({"train": [["x.png", 0, "cat"], ["y.png", 0, "dog"]], "val": [], "test": []})
    )
    with pytest.raises(ValueError, match="label 0 is named both"):
        fewshot.read_coop_split(bad)
    bad.write_text(json.dumps({"train": [["x.png", 1, "cat"]], "val": [], "test": []}))
    with pytest.raises(ValueError, match="missing \\[0\\]"):
        fewshot.read_coop_split(bad)
    bad.write_text(json.dumps({"train": []}))
    with pytest.raises(ValueError, match="missing list 'val'"):
        fewshot.read_coop_split(bad)


def test_generator_writes_cached_image_folder(tmp_path):
    spec = {
        "classes": ["red circle", "blue star"],
        "train_per_class": 3,
        "test_per_class": 2,
        "size": 24,
    }
    root = fewshot.generate_shapes_dataset(tmp_path / "ds", spec)
    train = fewshot.read_image_folder(root / "train")
    assert train.classnames == ["blue star", "red circle"] and len(train.items) == 6
    assert len(fewshot.read_image_folder(root / "test").items) == 4
    assert Image.open(train.items[0][0]).size == (24, 24)
    stamp = train.items[0][0].stat().st_mtime_ns
    fewshot.generate_shapes_dataset(root, spec)  # same spec: cached, untouched
    assert train.items[0][0].stat().st_mtime_ns == stamp
    fewshot.generate_shapes_dataset(
        root, spec | {"classes": ["green square"]}
    )  # new spec: regenerated
    assert fewshot.read_image_folder(root / "train").classnames == ["green square"]
    with pytest.raises(ValueError, match="'<colour> <shape>'"):
        fewshot.generate_shapes_dataset(tmp_path / "x", {"classes": ["circle"]})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        fewshot.generate_shapes_dataset(tmp_path / "busy", spec)


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        fewshot.load_image(bad)
