import json

import numpy as np
import pytest
from PIL import Image

from lorakit.data.camouflage import CamouflageSpec, ensure_cod, generate_cod, render_scene


def _contrast(difficulty: float) -> float:
    """Mean colour distance between object and background over a few scenes."""
    rng = np.random.default_rng(3)
    gaps = []
    for _ in range(8):
        img, mask = render_scene(rng, 96, difficulty)
        img = img.astype(float)
        gaps.append(np.linalg.norm(img[mask].mean(0) - img[~mask].mean(0)))
    return float(np.mean(gaps))


def test_layout_and_weak_labels(tmp_path):
    root = generate_cod(tmp_path / "cod", CamouflageSpec(n=3, size=64, difficulty=0.4, seed=1))
    points = json.loads((root / "points.json").read_text())
    boxes = json.loads((root / "boxes.json").read_text())
    for name in ("0000", "0001", "0002"):
        img = np.asarray(Image.open(root / "Imgs" / f"{name}.png"))
        gt = np.asarray(Image.open(root / "GT" / f"{name}.png")) > 127
        sc = np.asarray(Image.open(root / "Scribble" / f"{name}.png"))
        assert img.shape == (64, 64, 3) and gt.shape == sc.shape == (64, 64)
        assert set(np.unique(sc)) <= {0, 1, 2} and (sc == 1).any() and (sc == 2).any()
        assert gt[sc == 1].all() and not gt[sc == 2].any()  # scribbles never cross the boundary
        for x, y, lab in points[name]:
            assert gt[y, x] == (lab == 1)
        x0, y0, x1, y1 = boxes[name]
        ys, xs = np.nonzero(gt)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max(), ys.max())


def test_difficulty_controls_contrast():
    assert _contrast(0.0) > 1.5 * _contrast(0.9)


def test_ensure_reuses_matching_and_regenerates_other(tmp_path):
    spec = CamouflageSpec(n=2, size=48, seed=0)
    root = ensure_cod(tmp_path / "c", spec)
    stamp = (root / "Imgs" / "0000.png").stat().st_mtime_ns
    ensure_cod(root, spec)
    assert (root / "Imgs" / "0000.png").stat().st_mtime_ns == stamp
    ensure_cod(root, CamouflageSpec(n=1, size=48, seed=5))
    assert sorted(p.name for p in (root / "Imgs").iterdir()) == ["0000.png"]


def test_bad_difficulty(tmp_path):
    with pytest.raises(ValueError, match="difficulty"):
        generate_cod(tmp_path, CamouflageSpec(difficulty=1.5))


def _texture_gap(difficulty: float, n: int = 12) -> tuple[float, float]:
    """Mean object-vs-background gap in texture (structure-tensor orientation, radians,
    plus log gradient energy) and in mean colour (0-255 units) over ``n`` scenes."""
    import cv2

    rng = np.random.default_rng(5)
    tex, col = [], []
    for _ in range(n):
        img, mask = render_scene(rng, 128, difficulty)
        grey = img.astype(np.float32).mean(2)
        gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
        inner = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        outer = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
        stats = []
        for m in (inner, outer):
            jxx, jyy, jxy = (gx[m] ** 2).mean(), (gy[m] ** 2).mean(), (gx[m] * gy[m]).mean()
            stats.append((0.5 * np.arctan2(2 * jxy, jxx - jyy), np.log(jxx + jyy + 1e-6)))
        d_angle = abs((stats[0][0] - stats[1][0] + np.pi / 2) % np.pi - np.pi / 2)
        tex.append(d_angle + abs(stats[0][1] - stats[1][1]))
        col.append(np.linalg.norm(img[inner].mean(0) - img[outer].mean(0)))
    return float(np.mean(tex)), float(np.mean(col))


def test_objects_differ_in_texture_more_than_in_colour_at_graded_difficulty():
    from lorakit.data.camouflage import texture_cues

    rng = np.random.default_rng(0)
    assert all(texture_cues(rng, 1.0) == (1.0, 0.0) for _ in range(10))  # no cue at all
    cues = [texture_cues(rng, 0.0) for _ in range(30)]
    assert all(abs(np.log(s)) > 0.9 or abs(t) == 80 for s, t in cues)  # a strong cue each
    assert {abs(t) == 80 for _, t in cues} == {True, False}  # orientation in some, scale in others
    easy, hard = _texture_gap(0.2), _texture_gap(1.0)
    assert easy[0] > 1.5 * hard[0]  # the texture gap grows with the cue
    assert easy[1] < 40  # colour stays matched: well under 16 % of the 0-255 range
