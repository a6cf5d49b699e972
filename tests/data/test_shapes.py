import numpy as np
import pytest

from lorakit.data import shapes


@pytest.mark.parametrize("style", shapes.STYLES)
def test_render_shape_dtype_and_determinism(style):
    a = shapes.render("star", "red", "grass", 48, np.random.default_rng(3), style)
    b = shapes.render("star", "red", "grass", 48, np.random.default_rng(3), style)
    c = shapes.render("star", "red", "grass", 48, np.random.default_rng(4), style)
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_every_shape_and_background_renders_distinct_images():
    rng = np.random.default_rng(0)
    imgs = [
        shapes.render(s, "blue", b, 32, rng) for s in shapes.SHAPES for b in shapes.BACKGROUNDS[:2]
    ]
    flat = {img.tobytes() for img in imgs}
    assert len(flat) == len(imgs)


def test_colour_is_painted_where_the_shape_is():
    # same seed: same pose and background, so the images differ only inside the shape
    red = shapes.render("circle", "red", "snow", 64, np.random.default_rng(1)).astype(float)
    blue = shapes.render("circle", "blue", "snow", 64, np.random.default_rng(1)).astype(float)
    diff = np.abs(red - blue).sum(-1) > 60
    assert 0.05 < diff.mean() < 0.6  # the shape covers a visible part of the image
    assert red[diff][:, 0].mean() > red[diff][:, 2].mean() + 80
    assert blue[diff][:, 2].mean() > blue[diff][:, 0].mean() + 80


def test_styles_change_the_domain():
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    plain = shapes.render("square", "green", "brick", 64, rng()).astype(float)
    sketch = shapes.render("square", "green", "brick", 64, rng(), "sketch").astype(float)
    dark = shapes.render("square", "green", "brick", 64, rng(), "dark").astype(float)
    assert sketch.mean() > 200  # mostly paper
    assert dark.mean() < plain.mean() * 0.6


def test_caption_and_errors():
    assert shapes.caption("triangle", "red", "grass") == "a red triangle on grass"
    assert shapes.caption("triangle", "red") == "a red triangle"
    with pytest.raises(ValueError, match="unknown shape 'blob'"):
        shapes.render("blob", "red", "grass", 32)
    with pytest.raises(ValueError, match="unknown colour"):
        shapes.render("circle", "mauve", "grass", 32)
    with pytest.raises(ValueError, match="unknown style"):
        shapes.render("circle", "red", "grass", 32, style="oil")
    with pytest.raises(ValueError, match="at least 16"):
        shapes.render("circle", "red", "grass", 8)
