"""``lorakit reproduce clip-lora`` on a tiny fake tree in CoOp's real layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lorakit.apps.cli.commands import app
from lorakit.apps.cli.recipes import RECIPES

CLASSES = ["red circle", "green square"]


def _img(path, k):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = [(215, 40, 40), (40, 170, 60)][k % 2]
    a = np.zeros((40, 40, 3), np.uint8) + np.array(rgb, np.uint8)
    Image.fromarray(a).save(path)


def make_tree(root):
    """oxford_pets (split_zhou json), fgvc_aircraft (txt lists), imagenet (folders)."""
    pets = root / "oxford_pets"
    split = {}
    for part, n in (("train", 3), ("val", 1), ("test", 2)):
        split[part] = []
        for label, name in enumerate(CLASSES):
            for i in range(n):
                rel = f"{name.replace(' ', '_')}_{part}{i}.jpg"
                _img(pets / "images" / rel, label)
                split[part].append([rel, label, name])
    (pets / "split_zhou_OxfordPets.json").write_text(json.dumps(split))
    air = root / "fgvc_aircraft"
    air.mkdir(parents=True)
    (air / "variants.txt").write_text("\n".join(CLASSES) + "\n")
    for part, n in (("train", 3), ("val", 1), ("test", 2)):
        lines = []
        for label, name in enumerate(CLASSES):
            for i in range(n):
                image = f"{part}{label}{i}"
                _img(air / "images" / f"{image}.jpg", label)
                lines.append(f"{image} {name}")
        (air / f"images_variant_{part}.txt").write_text("\n".join(lines) + "\n")
    net = root / "imagenet"
    net.mkdir(parents=True)
    (net / "classnames.txt").write_text("n001 red circle\nn002 green square\n")
    for sub, n in (("train", 3), ("val", 2)):
        for label, wnid in enumerate(("n001", "n002")):
            for i in range(n):
                _img(net / "images" / sub / wnid / f"{i}.JPEG", label)
    return root


ARGS = ["--model", "lorakit-tiny-vit", "--steps-per-shot", "2", "--accelerator", "cpu",
        "--precision", "32-true", "--workers", "0", "--seeds", "1"]


def test_recipe_registry_names_importable_modules():
    import importlib

    for module in RECIPES.values():
        mod = importlib.import_module(module)
        assert isinstance(mod.SUMMARY, str) and mod.SUMMARY
        # its own command line, or check/run + OPTIONS for the generic one (apps/cli/recipe.py)
        assert callable(getattr(mod, "cli", None)) or (
            callable(mod.check) and callable(mod.run) and mod.OPTIONS
        )


def test_clip_lora_runs_end_to_end_on_a_fake_coop_tree(tmp_path):
    root, out = make_tree(tmp_path / "data"), tmp_path / "out"
    cmd = ["reproduce", "clip-lora", "--data-root", str(root), "--out", str(out),
           "--datasets", "oxford_pets,fgvc_aircraft,imagenet", "--shots", "1,2", *ARGS]
    res = CliRunner().invoke(app, cmd)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())["results"]
    assert {(r["dataset"], r["shots"]) for r in results} == {
        (d, k) for d in ("oxford_pets", "fgvc_aircraft", "imagenet") for k in (1, 2)}
    cfg = (out / "oxford_pets" / "shots2" / "seed1" / "config.yaml").read_text()
    assert "a type of pet" in cfg and "max_steps: 4" in cfg and "r: 2" in cfg
    assert "| oxford_pets |" in (out / "results.md").read_text()


@pytest.mark.parametrize("what", ["image", "split", "checkpoint"])
def test_first_missing_input_is_named_in_one_line_and_nothing_is_written(tmp_path, what):
    root, out = make_tree(tmp_path / "data"), tmp_path / "out"
    extra = []
    if what == "image":
        gone = root / "oxford_pets" / "images" / "green_square_test1.jpg"
        gone.unlink()
    elif what == "split":
        gone = root / "fgvc_aircraft" / "images_variant_test.txt"
        gone.unlink()
    else:
        gone = tmp_path / "ViT-B-16.pt"
        extra = ["--model", "ViT-B-16", "--checkpoint", str(gone)]
    cmd = ["reproduce", "clip-lora", "--data-root", str(root), "--out", str(out),
           "--datasets", "oxford_pets,fgvc_aircraft", "--shots", "1", *ARGS, *extra]
    res = CliRunner().invoke(app, cmd)
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(gone) in lines[0], res.output
    assert not out.exists()


def test_default_model_asks_for_a_checkpoint(tmp_path):
    res = CliRunner().invoke(app, ["reproduce", "clip-lora", "--data-root", str(tmp_path)])
    assert res.exit_code == 2 and "--checkpoint" in res.output
    res = CliRunner().invoke(app, ["reproduce", "no-such"])
    assert res.exit_code == 2 and "clip-lora" in res.output


def test_missing_required_option_is_one_line(tmp_path):
    res = CliRunner().invoke(app, ["reproduce", "clip-lora", "--shots", "1"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "--data-root" in lines[0], res.output
