"""Where and how speech is recorded, as waveform augmentations: room reverberation from a
generated impulse response, background noise at a drawn SNR (coloured noise or babble),
microphone / channel band-limiting, and disfluent timing (pauses, a repeated chunk).

Synthesised training speech is dry, clean, full-band and fluent; real child speech is
none of these. A model adapted on the dry speech learns the synthesis engine as much as the
speaker (``augment:``'s ``reverb_p``, ``noise_p``, ``bandlimit_p``, ``disfluency_p``).
Pure torch; every draw comes from the ``random.Random`` the caller passes (the dataset
seeds it per item), so a resumed run repeats the same audio. ``(T,)`` float32 at 16 kHz.
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor

from .audio_config import NOISE_KINDS  # noqa: F401  (the kinds add_noise knows)

# amplitude of a decay that loses 60 dB over RT60 seconds: exp(-LN1000 * t / RT60)
LN1000 = math.log(1000.0)


def room_impulse(rt60: float, sr: int, rng: random.Random, predelay: float = 0.004) -> Tensor:
    """A diffuse-room impulse response: the direct path (1 at t = 0) then, after
    ``predelay`` s, Gaussian noise whose envelope decays by 60 dB over ``rt60`` s (the
    statistical model of late reverberation; no early-reflection geometry). The tail's
    energy equals the direct path's (a speaker a few metres from the microphone); the IR is
    scaled to unit energy. ``(round(rt60 * sr),)``."""
    n = max(int(round(rt60 * sr)), 2)
    gen = torch.Generator().manual_seed(rng.getrandbits(63))
    t = torch.arange(n, dtype=torch.float32) / sr
    tail = torch.randn(n, generator=gen) * torch.exp(-LN1000 * t / rt60)
    tail[: max(1, int(predelay * sr))] = 0
    ir = tail / tail.norm().clamp_min(1e-12)
    ir[0] = 1.0
    return ir / ir.norm()


def convolve(wave: Tensor, ir: Tensor) -> Tensor:
    """Linear convolution (FFT), cut to ``wave``'s length (the last tail is dropped)."""
    n = wave.numel() + ir.numel() - 1
    out = torch.fft.irfft(torch.fft.rfft(wave, n) * torch.fft.rfft(ir, n), n)
    return out[: wave.numel()]


def reverberate(wave: Tensor, rt60: float, rng: random.Random, sr: int) -> Tensor:
    return convolve(wave, room_impulse(rt60, sr, rng))


def coloured_noise(n: int, kind: str, gen: torch.Generator) -> Tensor:
    """White, pink (1/f power) or brown (1/f^2 power) Gaussian noise, unit power. ``(n,)``."""
    white = torch.randn(n, generator=gen)
    if kind == "white":
        return white
    exponent = {"pink": 0.5, "brown": 1.0}[kind]  # amplitude ~ f^-exponent
    spec = torch.fft.rfft(white)
    f = torch.arange(spec.numel(), dtype=torch.float32).clamp_min(1.0)
    out = torch.fft.irfft(spec / f**exponent, n)
    return out / out.pow(2).mean().sqrt().clamp_min(1e-12)


def babble(wave: Tensor, rng: random.Random, talkers: tuple[int, int] = (3, 6)) -> Tensor:
    """Speech-shaped babble from the utterance itself: several time-reversed copies at random
    circular shifts, summed (reversed speech keeps the spectrum and rhythm of speech but says
    no words the transcript could contain). Unit power. ``(T,)``."""
    rev = wave.flip(0)
    out = sum(torch.roll(rev, rng.randrange(wave.numel())) for _ in range(rng.randint(*talkers)))
    return out / out.pow(2).mean().sqrt().clamp_min(1e-12)


def add_noise(wave: Tensor, snr_db: float, kind: str, rng: random.Random) -> Tensor:
    """``wave`` plus ``kind`` noise scaled so that 10 log10(P_speech / P_noise) = ``snr_db``,
    with P the mean power over the whole utterance (pauses included)."""
    if kind == "babble":
        noise = babble(wave, rng)
    else:
        noise = coloured_noise(
            wave.numel(), kind, torch.Generator().manual_seed(rng.getrandbits(63))
        )
    power = wave.pow(2).mean()
    return wave + noise * torch.sqrt(power / 10 ** (snr_db / 10))


def band_limit(wave: Tensor, low_hz: float, high_hz: float, sr: int) -> Tensor:
    """Keep only ``low_hz`` .. ``high_hz`` (a cheap microphone or a telephone line, e.g.
    300-3400 Hz): an FFT filter over the whole utterance, zero outside the band."""
    spec = torch.fft.rfft(wave)
    freqs = torch.fft.rfftfreq(wave.numel(), 1.0 / sr)
    return torch.fft.irfft(spec * ((freqs >= low_hz) & (freqs <= high_hz)), wave.numel())


def _quiet_points(wave: Tensor, sr: int, frame_s: float = 0.02) -> list[int]:
    """Sample offsets of the quietest 20 % of 20 ms frames inside the speech (word and
    syllable boundaries, roughly), the first and last 10 % of the utterance excluded."""
    frame = max(1, int(frame_s * sr))
    frames = wave.numel() // frame
    if frames < 10:
        return [wave.numel() // 2]
    energy = wave[: frames * frame].reshape(frames, frame).pow(2).mean(1)
    lo, hi = frames // 10, frames - frames // 10
    inner = energy[lo:hi]
    k = max(1, len(inner) // 5)
    idx = torch.topk(inner, k, largest=False).indices + lo
    return sorted(int(i) * frame for i in idx)


def disfluent(
    wave: Tensor,
    rng: random.Random,
    sr: int,
    pauses: int,
    pause_s: tuple[float, float],
    repeat: bool,
    repeat_s: tuple[float, float],
) -> Tensor:
    """Disfluent timing: ``pauses`` silent pauses (each ``pause_s`` long) at quiet points,
    and when ``repeat`` a chunk of ``repeat_s`` seconds starting at a quiet point spoken
    twice ("I- I want"), as a hesitant child does. The transcript stays the fluent one:
    the model is taught to write what was meant, not the stutter. Longer ``(T',)``."""
    points = _quiet_points(wave, sr)
    cuts: dict[int, Tensor] = {}
    if repeat:
        start = rng.choice(points)
        n = int(rng.uniform(*repeat_s) * sr)
        chunk = wave[start : start + n]
        gap = torch.zeros(int(rng.uniform(0.05, 0.15) * sr))
        cuts[start] = torch.cat([chunk, gap])  # played once more before the original
    for _ in range(pauses):
        at = rng.choice(points)
        silence = torch.zeros(int(rng.uniform(*pause_s) * sr))
        cuts[at] = torch.cat([cuts[at], silence]) if at in cuts else silence
    pieces, last = [], 0
    for at in sorted(cuts):
        pieces += [wave[last:at], cuts[at]]
        last = at
    pieces.append(wave[last:])
    return torch.cat(pieces)


def augment_scene(wave: Tensor, cfg, rng: random.Random, sr: int) -> Tensor:
    """The scene augmentations of ``cfg`` in recording order: the speaker's timing, the
    room, the background, the microphone. An augmentation whose probability is 0 draws
    nothing from ``rng``, so runs made before these existed repeat exactly."""
    fired = False
    if cfg.disfluency_p > 0 and rng.random() < cfg.disfluency_p:
        pauses = rng.randint(0, cfg.max_pauses)
        repeat = rng.random() < cfg.repeat_p
        wave, fired = disfluent(wave, rng, sr, pauses, cfg.pause_s, repeat, cfg.repeat_s), True
    if cfg.reverb_p > 0 and rng.random() < cfg.reverb_p:
        wave, fired = reverberate(wave, rng.uniform(*cfg.reverb_rt60), rng, sr), True
    if cfg.noise_p > 0 and rng.random() < cfg.noise_p:
        snr, kind = rng.uniform(*cfg.noise_snr_db), rng.choice(cfg.noise_kinds)
        wave, fired = add_noise(wave, snr, kind, rng), True
    if cfg.bandlimit_p > 0 and rng.random() < cfg.bandlimit_p:
        low, high = rng.uniform(*cfg.bandlimit_low_hz), rng.uniform(*cfg.bandlimit_high_hz)
        wave, fired = band_limit(wave, low, high, sr), True
    peak = float(wave.abs().max())
    return wave * (0.95 / peak) if fired and peak > 0.95 else wave  # no clipping at 16 bits
