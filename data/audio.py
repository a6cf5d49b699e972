"""Audio loading (any format ffmpeg reads, resampled to 16 kHz mono) and the child-speech
augmentations: pitch shift, formant / vocal-tract-length warping, tempo and speed
perturbation, SpecAugment.

All waveforms are 1-D float32 tensors ``(T,)`` at ``SAMPLE_RATE`` unless stated.
Pitch shift is the fast path (phase vocoder + resample, ~20 ms per second of audio):
``torchaudio.functional.pitch_shift`` takes 13-17 s per second of audio on first use.
"""

from __future__ import annotations

import math
import random
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from torch import Tensor

from .audio_config import AugmentConfig  # noqa: F401  (the section's old home)
from .audio_scene import augment_scene

SAMPLE_RATE = 16000
N_FFT, HOP = 512, 128


class AudioError(ValueError):
    """Unreadable, empty or over-long audio; the message names the file."""


def load_audio(
    path: str | Path, sr: int = SAMPLE_RATE, max_duration: float | None = None, where: str = ""
) -> Tensor:
    """Decode ``path`` with ffmpeg to mono float32 at ``sr``; ``(T,)``.

    Raises ``AudioError`` naming the file (and ``where``, e.g. ``manifest.jsonl line 3``)
    for a missing/unreadable file, empty audio, or audio longer than ``max_duration`` s.
    """
    path = Path(path)
    tag = f"{path}" + (f" ({where})" if where else "")
    if not path.is_file():
        raise AudioError(f"audio file {tag} does not exist")
    if path.suffix.lower() == ".wav":  # the generated corpora: no ffmpeg process per file
        _check_header_duration(path, tag, max_duration)
        wave = _read_wav(path, sr)
        if wave is not None:
            check_audio(wave, sr, tag, max_duration)
            return wave
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-threads",
        "0",
        "-i",
        str(path),
        "-f",
        "s16le",
        "-ac",
        "1",
        "-acodec",
        "pcm_s16le",
        "-ar",
        str(sr),
    ]
    if max_duration is not None:  # stop decoding just past the limit: memory stays bounded
        cmd += ["-t", f"{max_duration + 1.0:.3f}"]
    cmd.append("-")
    try:
        out = subprocess.run(cmd, capture_output=True, check=True).stdout
    except FileNotFoundError:
        raise AudioError("ffmpeg is not installed (Debian: apt-get install ffmpeg)") from None
    except subprocess.CalledProcessError as e:
        msg = e.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
        raise AudioError(f"cannot read audio {tag}: {msg[0]}") from None
    wave = torch.from_numpy(np.frombuffer(out, np.int16).astype(np.float32) / 32768.0)
    if max_duration is not None and wave.numel() / sr > max_duration:
        raise AudioError(
            f"audio {tag} is longer than {max_duration:.1f} s, over the limit "
            "(raise max_duration or split the file)"
        )
    check_audio(wave, sr, tag, max_duration)
    return wave


def _check_header_duration(path: Path, tag: str, max_duration: float | None) -> None:
    """Refuse a too-long WAV from its header, before decoding it."""
    import soundfile as sf

    if max_duration is None:
        return
    try:
        seconds = sf.info(str(path)).duration
    except (RuntimeError, sf.LibsndfileError):
        return  # unreadable header: the decoder names the problem
    if seconds > max_duration:
        raise AudioError(
            f"audio {tag} is {seconds:.1f} s long, over the limit of {max_duration:.1f} s "
            "(raise max_duration or split the file)"
        )


def _read_wav(path: Path, sr: int) -> Tensor | None:
    """16-bit / float WAV via soundfile, mixed to mono and resampled; None if unreadable."""
    import soundfile as sf

    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError):
        return None  # let ffmpeg try (and name the problem)
    return resample(torch.from_numpy(data.mean(1)), rate, sr)


def check_audio(wave: Tensor, sr: int, tag: str, max_duration: float | None = None) -> None:
    if wave.numel() and not bool(torch.isfinite(wave).all()):
        raise AudioError(f"audio {tag} has non-finite samples (NaN or inf)")
    if wave.numel() == 0 or float(wave.abs().max()) < 1e-5:
        raise AudioError(f"audio {tag} is empty (no samples or only silence)")
    seconds = wave.numel() / sr
    if max_duration is not None and seconds > max_duration:
        raise AudioError(
            f"audio {tag} is {seconds:.1f} s long, over the limit of {max_duration:.1f} s "
            "(raise max_duration or split the file)"
        )


def resample(wave: Tensor, orig: int, new: int) -> Tensor:
    return wave if orig == new else AF.resample(wave, orig, new)


def _resample_ratio(wave: Tensor, ratio: float) -> Tensor:
    """Resample so the output has ~``len / ratio`` samples (plays ``ratio`` times faster)."""
    frac = Fraction(ratio).limit_denominator(200)
    return AF.resample(wave, frac.numerator, frac.denominator)


def time_stretch(wave: Tensor, rate: float) -> Tensor:
    """Phase-vocoder time stretch: ``rate`` > 1 is faster (shorter), pitch kept. ``(T,) -> (~T/rate,)``."""
    window = torch.hann_window(N_FFT)
    spec = torch.stft(wave, N_FFT, HOP, window=window, return_complex=True)
    phase_advance = torch.linspace(0, math.pi * HOP, spec.shape[0])[:, None]
    stretched = AF.phase_vocoder(spec, rate, phase_advance)
    length = int(round(wave.numel() / rate))
    return torch.istft(stretched, N_FFT, HOP, window=window, length=length)


def pitch_shift(wave: Tensor, semitones: float, sr: int = SAMPLE_RATE) -> Tensor:
    """Raise (or lower) pitch by ``semitones``, duration kept: stretch by ``f = 2^(n/12)``
    with the phase vocoder, then resample to play ``f`` times faster. ``(T,) -> (T,)``."""
    if semitones == 0:
        return wave
    factor = 2.0 ** (semitones / 12.0)
    out = _resample_ratio(time_stretch(wave, 1.0 / factor), factor)
    return _fit_length(out, wave.numel())


def speed_perturb(wave: Tensor, factor: float) -> Tensor:
    """Play ``factor`` times faster: tempo and pitch both change (Kaldi-style speed perturbation)."""
    return wave if factor == 1 else _resample_ratio(wave, factor)


def formant_warp(wave: Tensor, alpha: float, sr: int = SAMPLE_RATE, n_ceps: int = 30) -> Tensor:
    """Vocal-tract-length warping: scale the spectral envelope's frequency axis by ``alpha``
    (> 1 moves formants up, as a shorter vocal tract does) while keeping the harmonics (F0).

    Per STFT frame the log magnitude is split by cepstral liftering into an envelope (first
    ``n_ceps`` quefrencies) and fine structure; the envelope is resampled at ``f / alpha``;
    the phase is kept. ``(T,) -> (T,)``.
    """
    if alpha == 1:
        return wave
    window = torch.hann_window(N_FFT)
    spec = torch.stft(wave, N_FFT, HOP, window=window, return_complex=True)  # (F, frames)
    log_mag = torch.log(spec.abs() + 1e-7)
    ceps = torch.fft.irfft(log_mag, dim=0)  # real cepstrum, (N_FFT, frames)
    lifter = torch.zeros(ceps.shape[0], 1)
    lifter[:n_ceps] = 1
    lifter[-n_ceps + 1 :] = 1
    envelope = torch.fft.rfft(ceps * lifter, dim=0).real  # (F, frames)
    bins = torch.arange(envelope.shape[0], dtype=torch.float32)
    src = (bins / alpha).clamp(max=envelope.shape[0] - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=envelope.shape[0] - 1)
    w = (src - lo)[:, None]
    warped = envelope[lo] * (1 - w) + envelope[hi] * w
    new_mag = torch.exp(log_mag - envelope + warped)
    out = torch.istft(
        torch.polar(new_mag, spec.angle()), N_FFT, HOP, window=window, length=wave.numel()
    )
    peak = out.abs().max()
    return out * (wave.abs().max() / peak) if peak > 0 else out


def spec_augment(
    mel: Tensor,
    n_freq_masks: int = 2,
    freq_width: int = 10,
    n_time_masks: int = 2,
    time_width: int = 40,
    rng: random.Random | None = None,
    fill: float | None = None,
) -> Tensor:
    """SpecAugment masks on a log-mel ``(n_mels, frames)``; masked cells take ``fill``
    (default: the spectrogram's minimum, i.e. silence in Whisper's log-mel scale)."""
    rng = rng or random.Random()
    out = mel.clone()
    value = float(mel.min()) if fill is None else fill
    n_mels, frames = out.shape
    for _ in range(n_freq_masks):
        w = rng.randint(0, min(freq_width, n_mels))
        f0 = rng.randint(0, n_mels - w)
        out[f0 : f0 + w, :] = value
    for _ in range(n_time_masks):
        w = rng.randint(0, min(time_width, frames))
        t0 = rng.randint(0, frames - w)
        out[:, t0 : t0 + w] = value
    return out


def _fit_length(wave: Tensor, length: int) -> Tensor:
    if wave.numel() >= length:
        return wave[:length]
    return torch.nn.functional.pad(wave, (0, length - wave.numel()))


def augment_wave(
    wave: Tensor, cfg: AugmentConfig, rng: random.Random, sr: int = SAMPLE_RATE
) -> Tensor:
    """Apply the waveform augmentations of ``cfg`` in turn: the voice (pitch, formant, tempo,
    speed), then the recording scene (disfluency, reverb, noise, band-limit; ``audio_scene``)."""
    if rng.random() < cfg.pitch_p:
        wave = pitch_shift(wave, rng.uniform(*cfg.pitch_semitones), sr)
    if rng.random() < cfg.formant_p:
        wave = formant_warp(wave, rng.uniform(*cfg.formant_alpha), sr)
    if rng.random() < cfg.tempo_p:
        wave = time_stretch(wave, rng.uniform(*cfg.tempo_rate))
    if rng.random() < cfg.speed_p:
        wave = speed_perturb(wave, rng.uniform(*cfg.speed_factor))
    return augment_scene(wave, cfg, rng, sr)


def augment_mel(mel: Tensor, cfg: AugmentConfig, rng: random.Random) -> Tensor:
    if rng.random() < cfg.specaug_p:
        return spec_augment(
            mel, cfg.freq_masks, cfg.freq_width, cfg.time_masks, cfg.time_width, rng
        )
    return mel
