"""OOD at real size: torchvision ``vit_b_16`` (random weights, a torchvision state dict) at
224 px, the demo's LARGO, 2 steps, then evaluation on a handful of images, through the CLI."""

import json

import pytest
import torch

pytestmark = pytest.mark.slow


def test_vit_b_16_trains_and_evaluates_from_a_torchvision_state_dict(tmp_path, lorakit_cli):
    import torchvision

    torch.manual_seed(0)
    weights = tmp_path / "vit_b_16.pth"
    torch.save(torchvision.models.vit_b_16(weights=None).state_dict(), weights)
    run = tmp_path / "run"
    sets = [
        "backbone.kind=torchvision", "backbone.arch=vit_b_16", f"backbone.checkpoint={weights}",
        "backbone.image_size=null",  # the demo's tiny ViT size; vit_b_16 sets its own (224)
        f"data.root={tmp_path / 'task'}", "data.shift.train_per_class=2",
        "data.shift.test_per_class=1", "data.shift.ood_per_class=1",
        "eval.corruptions=[gaussian_noise]", "eval.severities=[1]",
        "eval.corruption_per_class=1", "eval.wise_alphas=[0.0,1.0]", "optim.batch_size=4",
        "trainer.max_steps=2", "trainer.checkpoint_every=2", "trainer.log_every=1",
    ]  # fmt: skip
    args = [f"--set={s}" for s in sets]
    lorakit_cli.run("train", "ood", "--config", str(lorakit_cli.demos / "ood.yaml"), "--out", str(run), *args,
                cwd=tmp_path)  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    print(f"[real size] ood metrics keys: {sorted(metrics)[:12]}")
    adapter = run / "adapter" / "adapter.safetensors"
    print(
        f"[real size] ood adapter {lorakit_cli.mb(adapter):.2f} MB, base {lorakit_cli.mb(weights):.0f} MB"
    )
    assert lorakit_cli.mb(adapter) < lorakit_cli.mb(weights) / 50
    lorakit_cli.run("eval", "ood", "--run", str(run), cwd=tmp_path)
    assert json.loads((run / "eval" / "all.json").read_text())
