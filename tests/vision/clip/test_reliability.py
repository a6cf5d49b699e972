"""Few-shot CLIP under the conditions a long run meets: SIGKILL and re-run, bf16-mixed,
two DDP processes. Tiny CLIP, a few steps; run with ``-m reliability``."""

import csv

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lorakit.vision.clip import pipeline

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def setup(tmp_path_factory, runs, shapes_root):
    where = tmp_path_factory.mktemp("clip-reliability")
    cfg = {
        "data": {"root": str(shapes_root), "shots": 4},
        # dropout draws differ per rank under DDP; the in-process resume test covers it
        "adapter": {"dropout": 0.0},
        "optim": {"lr": 0.01, "batch_size": 16},
        "trainer": {"max_steps": 10, "log_every": 1, "checkpoint_every": 3, "progress": False},
    }
    (where / "clip.yaml").write_text(yaml.safe_dump(cfg))
    args = ["clip", "--config", str(where / "clip.yaml")]
    runs.train(args, where / "reference")
    return args, where


def test_killed_run_resumes_exactly(setup, runs):
    args, where = setup
    runs.kill_and_rerun(args, where / "reference", where / "killed")


def test_two_ddp_processes_match_one(setup, runs):
    """Same global batch (16 = 8 per rank; crops and flips drawn for the global batch).
    Tolerance: adapter tensors within 1e-3 of their scale (measured ~8e-5), accuracy
    within 0.03."""
    args, where = setup
    runs.ddp(args, where / "ddp")
    runs.close(where / "ddp", where / "reference", 1e-3, ("accuracy",), 0.03)


def test_two_fsdp_processes_match_one(setup, runs):
    """FSDP on the CPU (gloo): each backbone block its own unit, frozen base and adapters
    side by side (``use_orig_params``); the same global batch as the one-process reference,
    so the saved adapter (gathered whole after the last step) and accuracy match it within
    the DDP test's tolerances."""
    args, where = setup
    fsdp = ["--devices", "2", "--strategy", "fsdp", "--accelerator", "cpu"]
    runs.train(args + fsdp, where / "fsdp")
    log = (where / "fsdp.log").read_text()
    assert "MEMBER: 2/2" in log, "rank 1 never started"
    for rank in (0, 1):
        seen = runs.seen(where / "fsdp", rank)
        assert (seen["world_size"], seen["global_rank"]) == (2, rank), seen
    runs.close(where / "fsdp", where / "reference", 1e-3, ("accuracy",), 0.03)
    # the checkpoint holds what one process's does: the adapter, whole, not the base
    got, want = (torch.load(where / r / "checkpoints" / "last.ckpt", weights_only=True)
                 for r in ("fsdp", "reference"))
    assert got["state_dict"].keys() == want["state_dict"].keys() and want["state_dict"]
    for k, v in want["state_dict"].items():
        assert got["state_dict"][k].shape == v.shape, k
    size = {r: (where / r / "checkpoints" / "last.ckpt").stat().st_size for r in ("fsdp", "reference")}
    assert size["fsdp"] < 1.2 * size["reference"], size  # no gathered buffer behind a view


def test_bf16_mixed_in_effect_with_finite_loss_and_fp32_adapters(run_cfg, tmp_path, runs):
    cfg = run_cfg("trainer.max_steps=3", "trainer.precision=bf16-mixed", "trainer.log_every=1")
    m = pipeline.train(cfg, tmp_path)
    assert m["steps"] == 3 and 0 <= m["accuracy"] <= 1
    with (tmp_path / "logs" / "metrics.csv").open() as f:
        losses = torch.tensor([float(r["train_loss"]) for r in csv.DictReader(f)])
    assert len(losses) == 3 and bool(torch.isfinite(losses).all())
    tensors = load_file(tmp_path / "adapter" / "adapter.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    runs.in_bf16(tmp_path)
