"""The optional second engine: Festival's ked voice, never a held-out (flite) voice."""

from __future__ import annotations

import random

import pytest

from lorakit.data import festival as fest
from lorakit.data import heldout


def test_missing_festival_is_one_line_naming_the_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(fest, "VOICE_DIR", tmp_path / "absent")
    assert not fest.available()
    with pytest.raises(ValueError) as e:
        fest.festival("hello")
    msg = str(e.value)
    assert "\n" not in msg and "apt-get install festival festvox-kdlpc16k" in msg


def test_the_voice_is_none_of_the_held_out_voices():
    # flite's kal16/awb/rms/slt come from Festival's kal/awb/rms/slt recordings
    held = {v.removesuffix("16") for v in heldout.VOICES}
    assert fest.VOICE.split("_")[0] not in held


@pytest.mark.skipif(not fest.available(), reason="festival + festvox-kdlpc16k not installed")
def test_festival_speaks_adult_and_childlike_versions():
    text = "My best friend has a red bike."
    adult = fest.speak_festival(text, "adult", random.Random(0))
    child = fest.speak_festival(text, "child", random.Random(0))
    assert 1.0 < adult.numel() / 16000 < 6.0 and 1.0 < child.numel() / 16000 < 6.0
    assert float(adult.abs().max()) == pytest.approx(0.9, abs=1e-3)
    high = fest.festival(text, f0=280)
    low = fest.festival(text, f0=100)
    assert high.numel() == low.numel()  # same durations, only the intonation target moved
    assert not (high - low).abs().max() < 1e-3
