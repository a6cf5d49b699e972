"""The optional second engine: Festival's ked voice, never a held-out (flite) voice."""

from __future__ import annotations

import random

import pytest
import torch

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
    high = fest.festival(text, f0=260)
    low = fest.festival(text, f0=110)
    assert high.numel() == low.numel()  # same durations, only the intonation target moved
    assert median_f0(high) > 1.6 * median_f0(low)


def median_f0(wave, sr: int = 16000) -> float:
    """Median autocorrelation pitch (60-400 Hz) of the loudest 40 ms frames."""
    n = int(0.04 * sr)
    frames = wave[: wave.numel() // n * n].reshape(-1, n)
    loud = frames[frames.pow(2).mean(1) > 0.3 * frames.pow(2).mean(1).max()]
    f0s = []
    for f in loud:
        f = f - f.mean()
        ac = torch.fft.irfft(torch.fft.rfft(f, 2 * n).abs() ** 2)[:n]
        lo, hi = sr // 400, sr // 60
        f0s.append(sr / (int(torch.argmax(ac[lo:hi])) + lo))
    return float(torch.tensor(f0s).median())
