"""The generated shift task: styles, controllable strength, ImageFolder trees, class map."""

import json

import numpy as np
import pytest

from lorakit.data.shift import STYLES, ShiftTask, render, write_shift_task


def test_render_styles_and_labels():
    imgs, ys = render(["circle", "square"], 3, "photo", size=24, seed=0)
    assert imgs.shape == (6, 24, 24, 3) and imgs.dtype == np.uint8
    assert ys.tolist() == [0, 1] * 3
    for style in STYLES[1:]:
        other, _ = render(["circle", "square"], 3, style, size=24, seed=0)
        assert np.abs(other.astype(int) - imgs).mean() > 5, style  # a real shift
    again, _ = render(["circle", "square"], 3, "photo", size=24, seed=0)
    assert np.array_equal(imgs, again)


def test_strength_controls_shift():
    base, _ = render(["star"], 4, "photo", size=24, seed=2)
    none, _ = render(["star"], 4, "sketch", size=24, seed=2, strength=0.0)
    half, _ = render(["star"], 4, "sketch", size=24, seed=2, strength=0.5)
    full, _ = render(["star"], 4, "sketch", size=24, seed=2, strength=1.0)
    assert np.array_equal(base, none)
    d_half, d_full = (np.abs(x.astype(int) - base).mean() for x in (half, full))
    assert 0 < d_half < d_full


def test_write_task_layout_and_reuse(tmp_path):
    task = ShiftTask(
        classes=["circle", "square", "triangle", "cross"],
        size=16,
        train_per_class=2,
        test_per_class=2,
        ood_per_class=2,
        ood_styles=["sketch", "night"],
    )
    desc = write_shift_task(tmp_path, task)
    assert desc["classes"] == task.classes
    assert sorted(p.name for p in (tmp_path / "id_train").iterdir()) == sorted(task.classes)
    assert len(list((tmp_path / "ood" / "night" / "cross").glob("*.png"))) == 2
    cmap = json.loads((tmp_path / "ood" / "sketch_subset" / "class_map.json").read_text())
    assert sorted(cmap.values()) == ["circle", "triangle"] and set(desc["ood"]) == {
        "sketch",
        "night",
        "sketch_subset",
    }
    stamp = (tmp_path / "id_train" / "circle" / "00000.png").stat().st_mtime_ns
    write_shift_task(tmp_path, task)  # same parameters: reused, not rewritten
    assert (tmp_path / "id_train" / "circle" / "00000.png").stat().st_mtime_ns == stamp


def test_bad_style(tmp_path):
    with pytest.raises(ValueError, match="not an OOD style"):
        write_shift_task(tmp_path, ShiftTask(ood_styles=["photo"]))
    with pytest.raises(ValueError, match="unknown shape"):
        render(["blob"], 1, "photo")
