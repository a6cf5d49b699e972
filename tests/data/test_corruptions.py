"""The ImageNet-C style corruption suite: deterministic per seed, every corruption changes
the image, results independent of batching, clear errors."""

import numpy as np
import pytest

from lorakit.data.corruptions import CORRUPTIONS, FAMILIES, corrupt, corruption_grid, resolve
from lorakit.data.shift import render


@pytest.fixture(scope="module")
def images():
    imgs, _ = render(["circle", "square", "star"], 2, "photo", size=32, seed=1)
    return imgs


def test_suite_covers_four_families():
    assert set(FAMILIES) == {"noise", "blur", "weather", "digital"}
    assert len(CORRUPTIONS) == 14 and len(corruption_grid()) == 70
    assert resolve(["noise", "fog"]) == ["gaussian_noise", "shot_noise", "impulse_noise", "fog"]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_deterministic_and_changes_image(images, name):
    for sev in (1, 5):
        a = corrupt(images, name, sev, seed=3)
        b = corrupt(images, name, sev, seed=3)
        assert a.shape == images.shape and a.dtype == np.uint8
        assert np.array_equal(a, b), f"{name} severity {sev} is not deterministic per seed"
        changed = (a != images).reshape(len(images), -1).any(1)
        assert changed.all(), f"{name} severity {sev} left an image unchanged"


def test_independent_of_batching(images):
    whole = corrupt(images, "gaussian_noise", 3, seed=0)
    parts = np.concatenate(
        [
            corrupt(images[:2], "gaussian_noise", 3, seed=0),
            corrupt(images[2:], "gaussian_noise", 3, seed=0, start_index=2),
        ]
    )
    assert np.array_equal(whole, parts)
    assert not np.array_equal(whole, corrupt(images, "gaussian_noise", 3, seed=1))


def test_severity_grows_damage(images):
    err = [
        np.abs(corrupt(images, "gaussian_noise", s).astype(int) - images).mean() for s in (1, 3, 5)
    ]
    assert err[0] < err[1] < err[2]


def test_errors(images):
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "fog", 6)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(images, "frost", 1)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(images.astype(np.float32), "fog", 1)
