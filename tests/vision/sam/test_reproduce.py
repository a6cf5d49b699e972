"""The COD recipe end to end on a tiny fake tree in the real layout (tiny SAM stand-in)."""

import json
import shutil

import pytest

from lorakit.data.camouflage import CamouflageSpec, generate_cod
from lorakit.vision.sam import reproduce

TINY = {"img_size": 64, "embed_dim": 32, "window": 2, "dim": 32, "pretrain_steps": 0}


def fake_tree(root):
    """TrainDataset + TestDataset/{CAMO,COD10K,NC4K}, boxes.json written from GT."""
    generate_cod(root / "TrainDataset", CamouflageSpec(n=4, size=64, seed=1))
    (root / "TrainDataset" / "boxes.json").unlink()
    reproduce.boxes_from_gt(root / "TrainDataset")
    for k, name in enumerate(reproduce.TEST_SETS):
        generate_cod(root / "TestDataset" / name, CamouflageSpec(n=2, size=64, seed=10 + k))
    return root


def test_recipe_runs_on_a_fake_tree(tmp_path):
    root = fake_tree(tmp_path / "cod")
    opts = dict(
        backbone="tiny",
        tiny=TINY,
        steps=2,
        rounds=1,
        round_steps=1,
        distill_steps=1,
        batch_size=2,
        overrides={"distill.size": 64, "distill.arch": "lraspp_mobilenet_v3_small"},
    )
    reproduce.check(root, **opts)
    m = reproduce.run(root, tmp_path / "out", **opts)
    assert set(m["datasets"]) == set(reproduce.TEST_SETS)
    assert set(m["distilled"]["datasets"]) == set(reproduce.TEST_SETS)
    assert m["steps"] == 3 and "zero_shot" in m
    boxes = json.loads((root / "TrainDataset" / "boxes.json").read_text())
    assert len(boxes) == 4 and all(b[0] <= b[2] and b[1] <= b[3] for b in boxes.values())


def test_first_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"^COD recipe: .*nowhere is missing$"):
        reproduce.check(tmp_path / "nowhere", backbone="tiny")
    root = fake_tree(tmp_path / "cod")
    (root / "TestDataset" / "COD10K" / "boxes.json").unlink()
    with pytest.raises(ValueError, match=r"COD10K/boxes\.json is missing \(write it with"):
        reproduce.check(root, backbone="tiny")
    # the real default: SAM vit_b from data_root/checkpoints
    with pytest.raises(ValueError, match=r"checkpoints/sam_vit_b_01ec64\.pth is missing"):
        reproduce.check(root, sets=["CAMO"])
    (root / "TrainDataset" / "GT" / "0002.png").unlink()  # weak labels suffice to train
    reproduce.check(root, backbone="tiny", sets=["CAMO"])
    (root / "TestDataset" / "CAMO" / "GT" / "0001.png").unlink()
    with pytest.raises(ValueError, match=r"CAMO/GT/0001\.png is missing"):
        reproduce.check(root, backbone="tiny", sets=["CAMO"])
    shutil.rmtree(root / "TrainDataset" / "Scribble")
    with pytest.raises(ValueError, match=r"TrainDataset/Scribble is missing"):
        reproduce.check(root, backbone="tiny", labels="scribble", sets=[])


def test_reproduce_command_checks_then_names_what_is_missing(tmp_path):
    """`lorakit reproduce fcl-cod` goes through the generic recipe CLI (check/run modules)."""
    from typer.testing import CliRunner

    from lorakit.apps.cli.commands import app

    root = fake_tree(tmp_path / "cod")
    runner = CliRunner()
    ok = runner.invoke(
        app, ["reproduce", "fcl-cod", "--data-root", str(root), "--check", "--opt", "backbone=tiny"]
    )
    assert ok.exit_code == 0 and "every input" in ok.output, ok.output
    out = tmp_path / "out"
    bad = runner.invoke(app, ["reproduce", "fcl-cod", "--data-root", str(root), "--out", str(out)])
    assert bad.exit_code == 2 and "sam_vit_b_01ec64.pth is missing" in bad.output
    assert not out.exists()  # checked before anything is written
    bad = runner.invoke(
        app, ["reproduce", "fcl-cod", "--data-root", str(root), "--check", "--opt", "colour=red"]
    )
    assert bad.exit_code == 2 and "--opt 'colour=red' is not KEY=VALUE" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
