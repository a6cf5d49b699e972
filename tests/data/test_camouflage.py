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
