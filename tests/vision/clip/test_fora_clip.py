"""FoRA on CLIP: the image tower's patch grid is filled in from the backbone's config, and
the text tower (a token sequence with no spatial grid) is refused before anything is
written."""

import json

import pytest
import torch
from safetensors.torch import load_file

from lorakit.vision.clip import pipeline
from lorakit.vision.clip.train import vision_grid


def test_the_patch_grid_of_each_image_tower():
    # image_size / patch_size of the configs: 32 / 8, 224 / 16, 336 / 14
    assert vision_grid("lorakit-tiny-vit") == (4, 4)
    assert vision_grid("ViT-B-16") == (14, 14)
    assert vision_grid("ViT-L-14-336") == (24, 24)
    assert vision_grid("no-such-model") is None


def test_fora_trains_the_image_tower_on_its_grid_and_refuses_the_text_tower(run_cfg, tmp_path):
    with pytest.raises(ValueError, match="text tower has none: set adapter.towers=vision"):
        pipeline.train(run_cfg("adapter.method=fora"), tmp_path / "both")
    assert not (tmp_path / "both").exists()

    run = tmp_path / "vision"
    metrics = pipeline.train(run_cfg("adapter.method=fora", "adapter.towers=vision"), run)
    assert metrics["accuracy"] >= 0.5, metrics  # 4 classes: chance is 0.25
    saved = json.loads((run / "adapter" / "adapter_config.json").read_text())["config"]
    assert saved["grid"] == [4, 4] and all(t.startswith("visual") for t in saved["targets"])
    masks = {k: v for k, v in load_file(run / "adapter" / "adapter.safetensors").items()
             if k.endswith(".M")}  # fmt: skip
    last = max(int(k.split(".")[3]) for k in masks)
    # the frequency branch trained on the grid tokens; only the class token (the prefix, on
    # the plain LoRA path) reaches the pooled output, so the last block's grid queries get no
    # gradient and its q mask stays exactly at its zero start
    for name, m in masks.items():
        assert (torch.count_nonzero(m) == 0) == (
            name.startswith(f"visual.transformer.resblocks.{last}.attn.adapters.q.")
        ), name
    assert pipeline.evaluate(run, {})["accuracy"] == pytest.approx(metrics["accuracy"])


def test_the_continual_loop_gives_fora_the_grid_too():
    from types import SimpleNamespace

    from lorakit.vision.clip.continual import ClipTasks

    runner = SimpleNamespace(cfg={"towers": "vision", "modules": ["q", "k", "v"]},
                             backbone=SimpleNamespace(name="lorakit-tiny-vit"))  # fmt: skip
    cfg = ClipTasks.adapter_config(runner, "fora", {"r": 2})
    assert cfg.grid == (4, 4) and cfg.targets[0].startswith(r"clip\.visual")
