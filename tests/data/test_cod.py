import json

import numpy as np
import pytest
from PIL import Image

from lorakit.data.camouflage import CamouflageSpec, generate_cod
from lorakit.data.cod import CODFolder


@pytest.fixture
def root(tmp_path):
    return generate_cod(tmp_path / "cod", CamouflageSpec(n=3, size=48, seed=2))


def test_reads_every_label(root):
    folder = CODFolder(root, need_gt=True, weak=("scribble", "points", "box"))
    assert folder.names == ["0000", "0001", "0002"]
    s = folder[1]
    assert s.image.shape == (48, 48, 3) and s.image.dtype == np.uint8
    assert s.gt.dtype == bool and s.gt.shape == (48, 48) and s.gt.any()
    assert s.scribble.max() == 2 and len(s.points) == 6 and len(s.box) == 4


def test_missing_gt_names_file(root):
    (root / "GT" / "0001.png").unlink()
    with pytest.raises(ValueError, match=r"GT/0001\.png"):
        CODFolder(root, need_gt=True)
    assert len(CODFolder(root, need_gt=False)) == 3  # training folders need no GT


def test_scribble_of_wrong_size_names_file(root):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "Scribble" / "0002.png")
    folder = CODFolder(root, need_gt=False, weak=("scribble",))
    with pytest.raises(ValueError, match=r"Scribble/0002\.png has size 30x20"):
        folder[2]


def test_scribble_values_checked(root):
    Image.fromarray(np.full((48, 48), 7, np.uint8)).save(root / "Scribble" / "0000.png")
    with pytest.raises(ValueError, match=r"0000\.png holds value 7"):
        CODFolder(root, weak=("scribble",))[0]


def test_unreadable_image_names_file(root):
    (root / "Imgs" / "0000.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*Imgs/0000\.png"):
        CODFolder(root)[0]


def test_missing_layout_and_json_entries(root, tmp_path):
    with pytest.raises(ValueError, match="Imgs"):
        CODFolder(tmp_path / "nowhere")
    (root / "Scribble" / "0000.png").unlink()
    with pytest.raises(ValueError, match=r"Scribble/0000\.png is missing"):
        CODFolder(root, weak=("scribble",))
    pts = json.loads((root / "points.json").read_text())
    del pts["0002"]
    (root / "points.json").write_text(json.dumps(pts))
    with pytest.raises(ValueError, match="points.json has no entry for image 0002"):
        CODFolder(root, weak=("points",))
