"""The hub's pre-made CLIP run (demo profile) trains on the pretrained stand-in."""

from __future__ import annotations

import json

from lorakit.apps.web.prebuilt import BuildStatus, profile, resolve


def test_demo_clip_run_beats_its_zero_shot_baseline(tmp_path):
    """The hub's pre-made CLIP run (demo profile) on the pretrained stand-in: unseen classes
    in an unseen style, where few-shot Block-LoRA clearly beats the zero-shot model."""
    from lorakit.apps.web.prebuilt import build_one

    spec = next(s for s in profile("demo", tmp_path) if s.pipeline == "clip")
    cfg = resolve(spec)
    assert cfg["backbone"]["pretrained"] == "lorakit-shapes"
    folder = build_one(spec, tmp_path, BuildStatus())
    m = json.loads((folder / "metrics.json").read_text())
    assert m["zero_shot_accuracy"] >= m["chance"]  # pretrained: not below chance
    assert m["accuracy"] >= m["zero_shot_accuracy"] + 0.25, m
