"""The ASR pipeline (S2-LoRA on a tiny random Whisper) under the conditions a long run
meets: SIGKILL and re-run, bf16-mixed, two DDP processes; run with ``-m reliability``."""

import csv

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lorakit.data.runs import load_config
from lorakit.speech.whisper import pipeline

pytestmark = pytest.mark.reliability

TINY = {
    "model": {"name": "tiny-random"},
    "adapter": {"method": "s2_lora", "r": 2, "alpha": 4, "targets": ["whisper-attn"]},
    "train": {"batch_size": 2},
    "eval": {"sample_len": 4, "baseline": False},
    "trainer": {"max_steps": 8, "log_every": 1, "checkpoint_every": 3, "progress": False},
}


def _cfg(corpus) -> dict:
    data = {"train": str(corpus["train"]), "test": str(corpus["test"])}
    return {**TINY, "data": data}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, runs, corpus):
    where = tmp_path_factory.mktemp("asr-reliability")
    (where / "asr.yaml").write_text(yaml.safe_dump(_cfg(corpus)))
    args = ["asr", "--config", str(where / "asr.yaml")]
    runs.train(args, where / "reference")
    return args, where


def test_killed_run_resumes_exactly(setup, runs):
    """S2-LoRA's shared pairs and rank coefficients (after their proximal steps), AdamW,
    the warm-up schedule, data order and the pitch/formant/tempo/SpecAugment draws all
    continue exactly after a SIGKILL."""
    args, where = setup
    runs.kill_and_rerun(args, where / "reference", where / "killed")


def test_two_ddp_processes_match_one(setup, runs):
    """Same global batch (2 = 1 utterance per rank); the cross-entropy is a mean over the
    global batch's tokens under DDP too. Tolerance: adapter tensors within 1e-3 of their
    scale (measured ~1e-6), WER within 0.02."""
    args, where = setup
    runs.ddp(args, where / "ddp")
    runs.close(where / "ddp", where / "reference", 1e-3, ("wer",), 0.02)


def test_bf16_mixed_in_effect_with_finite_loss_and_fp32_adapters(tmp_path, corpus, runs):
    cfg = load_config(None, [], pipeline.DEFAULTS)
    for section, values in _cfg(corpus).items():
        cfg[section] = {**cfg.get(section, {}), **values}
    cfg["trainer"].update(max_steps=3, precision="bf16-mixed", accelerator="cpu")
    m = pipeline.train(cfg, tmp_path / "run")
    assert m["train_steps"] == 3 and m["wer"] >= 0
    with (tmp_path / "run" / "logs" / "metrics.csv").open() as f:
        losses = torch.tensor([float(r["train_loss"]) for r in csv.DictReader(f)])
    assert len(losses) == 3 and bool(torch.isfinite(losses).all())
    tensors = load_file(tmp_path / "run" / "adapter" / "adapter.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    runs.in_bf16(tmp_path / "run")
