"""CLIP at real size: open_clip ViT-B-16 (random weights, an open_clip state dict on disk)
trained 2 steps with the demo's Comp-LoRA on both towers, then evaluated, through the CLI."""

import json

import pytest
import torch

pytestmark = pytest.mark.slow


def test_clip_vit_b_16_trains_and_evaluates_from_an_open_clip_state_dict(tmp_path, lorakit_cli):
    import open_clip

    torch.manual_seed(0)
    weights = tmp_path / "ViT-B-16.bin"  # what open_clip / OpenAI state dicts look like on disk
    torch.save(open_clip.create_model("ViT-B-16", pretrained=None).state_dict(), weights)
    run = tmp_path / "run"
    sets = [
        "backbone.name=ViT-B-16", "backbone.pretrained=null", f"backbone.checkpoint={weights}",
        "data.shots=1", "data.generate.train_per_class=1", "data.generate.test_per_class=1",
        "data.heldout.generate.test_per_class=1", "optim.batch_size=2",
        "trainer.max_steps=2", "trainer.checkpoint_every=2", "trainer.log_every=1",
    ]  # fmt: skip
    args = [f"--set={s}" for s in sets]
    lorakit_cli.run("train", "clip", "--config", str(lorakit_cli.demos / "clip.yaml"), "--out", str(run), *args,
                cwd=tmp_path)  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["method"] == "comp_lora"
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["adapted_layers"] == 24  # 12 image + 12 text attention blocks
    adapter = run / "adapter" / "adapter.safetensors"
    print(f"[real size] clip adapter {lorakit_cli.mb(adapter):.1f} MB, base {lorakit_cli.mb(weights):.0f} MB, "
          f"trainable {metrics['trainable_parameters']:,}")  # fmt: skip
    assert lorakit_cli.mb(adapter) < lorakit_cli.mb(weights) / 8  # the adapter, not the model
    lorakit_cli.run("eval", "clip", "--run", str(run), cwd=tmp_path)
    evaluated = json.loads((run / "metrics_eval.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(metrics["accuracy"])
