"""COD at real size: SAM vit_b (random weights in Meta's ``sam_vit_b_01ec64.pth`` layout)
at 1024 px, the demo's FoRA, 2 steps at batch 1 with activation checkpointing, then
evaluation, through the CLI."""

import json

import pytest
import torch

pytestmark = pytest.mark.slow


def test_sam_vit_b_trains_and_evaluates_from_meta_checkpoint_layout(tmp_path, lorakit_cli):
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    weights = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sam_model_registry["vit_b"]().state_dict(), weights)
    run = tmp_path / "run"
    sets = [
        "backbone.name=vit_b", f"backbone.checkpoint={weights}",
        f"data.cache={tmp_path / 'cache'}", "data.n_train=2", "data.n_test=2",
        "optim.batch_size=1", "eval.zero_shot=false", "trainer.activation_checkpointing=true",
        "trainer.max_steps=2", "trainer.checkpoint_every=2", "trainer.log_every=1",
    ]  # fmt: skip
    args = [f"--set={s}" for s in sets]
    lorakit_cli.run("train", "cod", "--config", str(lorakit_cli.demos / "cod.yaml"), "--out", str(run), *args,
                cwd=tmp_path)  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == "fora"
    assert 0.0 <= metrics["s_measure"] <= 1.0 and 0.0 <= metrics["mae"] <= 1.0
    adapter = run / "adapter" / "adapter.safetensors"
    print(
        f"[real size] cod adapter {lorakit_cli.mb(adapter):.2f} MB, base {lorakit_cli.mb(weights):.0f} MB"
    )
    assert lorakit_cli.mb(adapter) < lorakit_cli.mb(weights) / 50
    lorakit_cli.run("eval", "cod", "--run", str(run), cwd=tmp_path)
    evaluated = json.loads((run / "eval" / "all.json").read_text())
    assert evaluated
