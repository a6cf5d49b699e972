"""End to end on a tiny random Whisper: train, eval recomputes, exports round-trip."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from lorakit.data.runs import load_config
from lorakit.speech.whisper import pipeline
from lorakit.speech.whisper.build import load_whisper, tiny_whisper
from lorakit.speech.whisper.evaluate import score, summarize
from lorakit.speech.whisper.export import export_run, merged_copy
from lorakit.speech.whisper.transcribe import DecodeConfig, decode


def test_score_normalises_and_groups(corpus):
    from lorakit.data.manifest import read_manifest

    utts = read_manifest(corpus["test"])
    hyps = [
        u.text.upper().replace(".", "") if u.group == "adult" else "something else" for u in utts
    ]
    metrics = summarize(score(utts, hyps))
    assert metrics["wer_adult"] == 0.0 and metrics["cer_adult"] == 0.0
    assert metrics["wer_child"] > 0.5
    assert 0 < metrics["wer"] < metrics["wer_child"]


def test_train_and_eval_tiny(corpus, tmp_path):
    cfg = load_config(None, [], pipeline.DEFAULTS)
    cfg["backbone"]["name"] = "tiny-random"
    cfg["data"].update(
        train=str(corpus["train"]),
        val=str(corpus["train"]),
        test=str(corpus["test"]),
        heldout=str(corpus["test"]),  # groups become heldout_adult / heldout_child
    )
    cfg["adapter"] = {"method": "s2_lora", "r": 2, "alpha": 4, "targets": ["whisper-attn"]}
    cfg["trainer"].update(max_steps=2, progress=False, checkpoint_every=1)
    cfg["optim"].update(val_every=1)
    cfg["eval"].update(sample_len=4)
    out = tmp_path / "run"
    metrics = pipeline.train(cfg, out)
    assert {"wer", "cer", "wer_child", "baseline_wer", "wer_heldout_child"} <= set(metrics)
    assert {"wer_heldout_adult", "baseline_wer_heldout_child", "wer_heldout"} <= set(metrics)
    lo, hi = metrics["wer_heldout_child_ci"]
    assert lo <= metrics["wer_heldout_child"] <= hi
    assert [s for s, _ in metrics["val_history"]] == [0, 1, 2]
    assert metrics["val_wer"] == min(w for _, w in metrics["val_history"])
    assert set(metrics["s2_lora_ranks"].values()) <= set(range(3))
    assert json.loads((out / "metrics.json").read_text())["wer"] == metrics["wer"]
    assert (out / "adapter" / "adapter.safetensors").is_file()
    assert (out / "plots" / "s2_lora_lambda.png").is_file()
    with (out / "utterances.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 8  # test + held-out rows
    again = pipeline.evaluate(out, {"beam_size": 2})
    assert again["decoding"] == "beam2" and "wer" in again
    written = json.loads((out / "eval" / "all.json").read_text())  # the one layout
    assert written == json.loads((out / "metrics.json").read_text())  # the old place
    assert written["decoding"] == "beam2"


def test_bad_config_sections_are_named(tmp_path):
    cfg = load_config(None, [], pipeline.DEFAULTS)
    cfg["optim"]["bogus"] = 1
    with pytest.raises(ValueError, match="bogus"):
        pipeline.train(cfg, tmp_path / "run")


def test_merged_pt_and_ct2_exports_transcribe_alike(tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    import numpy as np

    from lorakit.core import inject, make_config, trainable_parameters

    model = tiny_whisper()
    inject(model, make_config("s2_lora", r=2, alpha=4, targets=("whisper-attn",)))
    with torch.no_grad():
        for p in trainable_parameters(model):
            p.add_(0.05 * torch.randn_like(p))
    written = export_run(model, tmp_path / "export")
    merged = load_whisper(str(written["pt"]))
    mel = torch.randn(2, 80, 600)
    cfg = DecodeConfig(sample_len=6)
    with torch.no_grad():
        assert torch.allclose(merged.encoder(mel), model.encoder(mel), atol=1e-4)
    assert decode(merged, mel, cfg) == decode(model, mel, cfg)
    # the CTranslate2 folder runs in ctranslate2 (faster-whisper's engine) like the merged model
    ct = ctranslate2.models.Whisper(str(written["ct2"]), device="cpu", compute_type="float32")
    theirs = np.array(ct.encode(ctranslate2.StorageView.from_array(mel.numpy())))
    with torch.no_grad():
        ours = merged_copy(model).encoder(mel).numpy()
    assert np.abs(theirs - ours).max() < 5e-2  # float16 storage
