"""The camouflage tab's scores match what its images show: the mask shown (p > 0.5) is
scored next to the probability map, and a disagreement between them is explained."""

from __future__ import annotations

import numpy as np
import pytest

from lorakit.apps.web import cod as app_cod
from lorakit.core.table import display_name


def _object(size=64):
    gt = np.zeros((size, size), bool)
    gt[16:48, 16:48] = True
    return gt


def _stretched_mae(prob, gt):
    """COD benchmarks' map MAE: the map min-max stretched to [0, 1], then mean |p - gt|."""
    p = (prob - prob.min()) / (prob.max() - prob.min())
    return float(np.abs(p - gt).mean())


def test_a_clearly_better_mask_wins_on_the_mask_columns_even_with_a_hazy_map():
    gt = _object()
    hazy = np.where(gt, 0.8, 0.3).astype(np.float32)  # covers the object; background haze
    hazy[:4, :4] = 0.0
    dot = np.zeros_like(hazy)
    dot[30:33, 30:33] = 0.9  # a dot inside the object
    dot[gt & (dot == 0)] = 0.45  # a faint object under the threshold: stretched, it counts
    sh, sd = app_cod.scores(hazy, gt), app_cod.scores(dot, gt)
    # the mask shown: the hazy model's is the object itself, the dot's is 9 pixels
    assert sh["IoU"] == pytest.approx(1.0)
    assert sd["IoU"] == pytest.approx(9 / gt.sum())
    assert sh["MAE (mask)"] == pytest.approx(0.0) and sh["S-measure (mask)"] > 0.99
    assert sd["MAE (mask)"] == pytest.approx((gt.sum() - 9) / gt.size)
    # the map, stretched as the benchmarks do: the faint dot-map beats the hazy one on MAE
    assert sh["MAE (map)"] == pytest.approx(_stretched_mae(hazy, gt), abs=3e-3)
    assert sd["MAE (map)"] == pytest.approx(_stretched_mae(dot, gt), abs=3e-3)
    assert sd["MAE (map)"] < sh["MAE (map)"]
    assert sh["background p"] == pytest.approx(0.3, abs=0.01)
    assert sd["background p"] == pytest.approx(0.0)
    lines = "\n".join(app_cod.score_lines(sd, sh, "FoRA"))
    assert "| SAM + FoRA | 1.000 |" in lines
    assert "disagree" in lines and "FoRA 0.30, zero-shot 0.00" in lines


def test_no_disagreement_sentence_when_map_and_mask_agree():
    gt = _object()
    good = np.where(gt, 0.9, 0.05).astype(np.float32)
    bad = good.copy()
    bad[16:48, 32:48] = 0.05  # half the object missed
    lines = "\n".join(
        app_cod.score_lines(app_cod.scores(bad, gt), app_cod.scores(good, gt), "FoRA")
    )
    assert "| SAM + FoRA | 1.000 |" in lines and "| SAM zero-shot | 0.500 |" in lines
    assert "disagree" not in lines


def test_an_uploaded_image_with_ground_truth_takes_its_box_and_a_typed_one_wins():
    gt = _object()
    scene = app_cod.Scene(np.zeros((64, 64, 3), np.uint8), gt=gt)
    points, box = app_cod.image_prompt(scene, "box", "")
    assert points is None and box == [16, 16, 47, 47]
    assert app_cod.image_prompt(scene, "box", "1 2 30 40")[1] == [1, 2, 30, 40]
    with pytest.raises(ValueError, match="upload a ground truth"):
        app_cod.image_prompt(app_cod.Scene(np.zeros((64, 64, 3), np.uint8)), "box", "")


def test_the_prompt_used_is_drawn_on_the_result():
    img = np.zeros((128, 128, 3), np.uint8)  # a 32 px scene enlarged 4x
    out = app_cod.draw_used_prompt(img, np.array([[10, 20, 1], [5, 5, 0]], np.float32), None, 4)
    assert tuple(out[20 * 4 + 2, 10 * 4 + 2]) == app_cod.FG_COLOR
    assert tuple(out[5 * 4 + 2, 5 * 4 + 2]) == app_cod.BG_COLOR
    boxed = app_cod.draw_used_prompt(img, None, [2, 3, 20, 25], 4)
    assert tuple(boxed[3 * 4, 10 * 4]) == (255, 220, 0) and not boxed[50, 50].any()


def test_method_names_as_the_papers_write_them():
    assert [display_name(m) for m in ("fora", "lora", "s2_lora", "largo", "comp_lora")] == [
        "FoRA",
        "LoRA",
        "S2-LoRA",
        "LARGO",
        "Comp-LoRA",
    ]
