import numpy as np
import pytest

from lorakit.data.cod import CODSample
from lorakit.vision.sam.prompts import (
    PromptOptions,
    label_map,
    points_from_scribble,
    resize_box,
    resize_points,
)


def test_points_come_from_scribble_pixels():
    sc = np.zeros((20, 30), np.uint8)
    sc[5, 3:8] = 1
    sc[15, 20:28] = 2
    pts = points_from_scribble(sc, np.random.default_rng(0), n_fg=4, n_bg=3)
    assert pts.shape == (7, 3)
    for x, y, lab in pts:
        assert sc[int(y), int(x)] == (1 if lab == 1 else 2)
    assert list(pts[:, 2]) == [1, 1, 1, 1, 0, 0, 0]


def test_scribble_without_foreground_is_an_error():
    with pytest.raises(ValueError, match="img7 has no foreground"):
        points_from_scribble(np.full((4, 4), 2, np.uint8), np.random.default_rng(0), 1, 1, "img7")


def test_resize_prompts_to_model_input():
    pts = resize_points(np.array([[0, 0, 1], [99, 49, 0]], np.float32), (50, 100), 200)
    assert np.allclose(pts[:, :2], [[0.5, 1.5], [198.5, 197.5]])
    assert np.allclose(resize_box([0, 0, 99, 49], (50, 100), 200), [0, 0, 199, 199])


def test_label_map_from_points():
    sample = CODSample("a", np.zeros((40, 40, 3), np.uint8), points=[[10, 10, 1], [30, 30, 0]])
    lab = label_map(sample, "points")
    assert lab[10, 10] == 1 and lab[30, 30] == 2 and lab[0, 39] == 0


def test_options_validate():
    with pytest.raises(ValueError, match="prompts.mode"):
        PromptOptions(mode="lasso").validate()
    assert PromptOptions(mode="points+box").weak == ("scribble", "box")
