"""Audio loading errors and the child-speech augmentations (F0 really moves)."""

from __future__ import annotations

import math
import random
import subprocess

import pytest
import soundfile as sf
import torch

from lorakit.data.audio import (
    SAMPLE_RATE,
    AudioError,
    AugmentConfig,
    augment_mel,
    augment_wave,
    formant_warp,
    load_audio,
    pitch_shift,
    spec_augment,
    speed_perturb,
    time_stretch,
)


def harmonic_tone(f0: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    return 0.2 * sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 8))


def estimate_f0(wave: torch.Tensor, lo: float = 60, hi: float = 500) -> float:
    """Autocorrelation pitch estimate with parabolic peak interpolation."""
    w = wave[2000:-2000] - wave[2000:-2000].mean()
    ac = torch.fft.irfft(torch.fft.rfft(w, n=2 * len(w)).abs() ** 2)[: len(w)]
    a, b = int(SAMPLE_RATE / hi), int(SAMPLE_RATE / lo)
    lag = int(torch.argmax(ac[a:b])) + a
    y0, y1, y2 = ac[lag - 1], ac[lag], ac[lag + 1]
    return SAMPLE_RATE / (lag + float(0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)))


@pytest.mark.parametrize("semitones", [-3.0, 2.0, 4.0, 7.0])
def test_pitch_shift_moves_f0_by_the_asked_interval(semitones):
    wave = harmonic_tone(150.0)
    out = pitch_shift(wave, semitones)
    assert out.shape == wave.shape
    assert estimate_f0(out) == pytest.approx(150.0 * 2 ** (semitones / 12), rel=0.01)


def test_formant_warp_keeps_f0_and_moves_spectral_centroid():
    wave = harmonic_tone(150.0)
    out = formant_warp(wave, 1.3)
    assert estimate_f0(out) == pytest.approx(150.0, rel=0.01)

    def centroid(w):
        mag = torch.fft.rfft(w).abs()
        freqs = torch.fft.rfftfreq(len(w), 1 / SAMPLE_RATE)
        return float((mag * freqs).sum() / mag.sum())

    assert centroid(out) > 1.1 * centroid(wave)


def test_tempo_keeps_pitch_speed_changes_both():
    wave = harmonic_tone(150.0)
    faster = time_stretch(wave, 1.25)
    assert len(faster) == pytest.approx(len(wave) / 1.25, abs=2)
    assert estimate_f0(faster) == pytest.approx(150.0, rel=0.01)
    sped = speed_perturb(wave, 1.1)
    assert len(sped) == pytest.approx(len(wave) / 1.1, rel=0.01)
    assert estimate_f0(sped) == pytest.approx(165.0, rel=0.01)


def test_spec_augment_masks_bands():
    mel = torch.rand(80, 300)
    before = mel.clone()
    out = spec_augment(mel, 1, 10, 1, 40, random.Random(1), fill=-5.0)
    assert (out == -5.0).any() and out.shape == mel.shape
    assert torch.equal(mel, before)  # the input is left untouched


def test_augment_config_probabilities():
    cfg = AugmentConfig(pitch_p=1.0, pitch_semitones=(3.0, 3.0))
    out = augment_wave(harmonic_tone(150.0), cfg, random.Random(0))
    assert estimate_f0(out) == pytest.approx(150.0 * 2**0.25, rel=0.01)
    mel = torch.rand(80, 100)
    assert torch.equal(augment_mel(mel, AugmentConfig(), random.Random(0)), mel)
    with pytest.raises(ValueError, match="pitch_semitones"):
        AugmentConfig(pitch_semitones=(4.0, 1.0))


def test_load_audio_resamples_any_format(tmp_path):
    t = torch.arange(22050) / 44100
    sf.write(tmp_path / "a.wav", (0.3 * torch.sin(2 * math.pi * 200 * t)).numpy(), 44100)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / "a.wav"), str(tmp_path / "a.flac")],
        check=True,
    )
    out = load_audio(tmp_path / "a.flac")
    assert out.dtype == torch.float32 and len(out) == pytest.approx(0.5 * SAMPLE_RATE, abs=20)


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio")
    with pytest.raises(AudioError, match="junk.wav"):
        load_audio(tmp_path / "junk.wav")
    sf.write(tmp_path / "silent.wav", torch.zeros(1600).numpy(), SAMPLE_RATE)
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "silent.wav")
    sf.write(tmp_path / "long.wav", harmonic_tone(100.0, 2.0).numpy(), SAMPLE_RATE)
    with pytest.raises(AudioError, match="over the limit"):
        load_audio(tmp_path / "long.wav", max_duration=1.0, where="m.jsonl line 4")
