"""Catalogue II in the speech pipeline: a rank-changing method on a tiny random Whisper."""

from __future__ import annotations

import json

from lorakit.core import load_adapter, protocol
from lorakit.data.runs import load_config
from lorakit.speech.whisper import pipeline
from lorakit.speech.whisper.build import tiny_whisper


def test_increlora_trains_saves_ranks_and_reloads(corpus, tmp_path):
    cfg = load_config(None, [], pipeline.DEFAULTS)
    cfg["backbone"]["name"] = "tiny-random"
    cfg["data"].update(train=str(corpus["train"]), val=str(corpus["train"]),
                       test=str(corpus["test"]), heldout=str(corpus["test"]))
    cfg["adapter"] = {"method": "increlora", "r": 1, "alpha": 1, "budget_r": 2, "warmup": 1,
                      "interval": 1, "per_step": 4, "targets": ["whisper-attn"]}
    cfg["trainer"].update(max_steps=3, progress=False, checkpoint_every=1)
    cfg["optim"].update(val_every=3)
    cfg["eval"].update(sample_len=4)
    out = tmp_path / "run"
    metrics = pipeline.train(cfg, out)
    assert "wer" in metrics
    ranks = json.loads((out / "ranks.json").read_text())
    n = len(ranks["ranks"])
    assert ranks["methods"] == ["increlora"] and n < ranks["total"] <= 2 * n  # grew, in budget
    assert (out / "plots" / "ranks.png").is_file()
    fresh = tiny_whisper()
    load_adapter(fresh, out / "adapter")
    assert protocol.ranks(fresh) == ranks["ranks"]
