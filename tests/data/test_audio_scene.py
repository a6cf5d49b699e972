"""The recording-scene augmentations do what their config says: reverb is a convolution
with a room impulse that decays 60 dB in RT60, noise lands at the drawn SNR, band-limiting
removes the out-of-band energy, disfluency lengthens the audio but not the transcript."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import soundfile as sf
import torch

from lorakit.data.audio import SAMPLE_RATE, AugmentConfig, augment_wave
from lorakit.data.audio_scene import coloured_noise, convolve, room_impulse

SR = SAMPLE_RATE


def speechlike(seconds: float = 2.0, seed: int = 0) -> torch.Tensor:
    """A 150 Hz harmonic tone switched on and off like syllables, peak < 0.5."""
    t = torch.arange(int(SR * seconds)) / SR
    tone = sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 10))
    gate = (torch.sin(2 * math.pi * 3 * t) > 0).float()
    noise = 0.01 * torch.randn(t.numel(), generator=torch.Generator().manual_seed(seed))
    return (0.1 * tone * gate + noise).float()


def only(**kw) -> AugmentConfig:
    return AugmentConfig(**kw)


def rt60_from_ir(ir: torch.Tensor) -> float:
    """Schroeder backward integration; the -5..-25 dB slope extrapolated to 60 dB."""
    edc = torch.flip(torch.cumsum(torch.flip(ir.double() ** 2, [0]), 0), [0])
    db = 10 * torch.log10(edc / edc[0])
    t = torch.arange(ir.numel(), dtype=torch.float64) / SR
    sel = (db <= -5) & (db >= -25)
    slope = np.polyfit(t[sel].numpy(), db[sel].numpy(), 1)[0]
    return -60.0 / slope


def test_reverb_is_a_convolution_with_a_room_impulse_of_the_drawn_rt60():
    cfg = only(reverb_p=1.0, reverb_rt60=(0.5, 0.5))
    n = 2 * SR
    delta = torch.zeros(n)
    delta[0] = 1.0
    ir = augment_wave(delta, cfg, random.Random(7))  # the impulse response itself
    x = speechlike()
    out = augment_wave(x, cfg, random.Random(7))
    expected = np.convolve(x.double().numpy(), ir.double().numpy())[:n]  # numpy, not ours
    assert np.allclose(out.numpy(), expected, atol=1e-4)
    assert rt60_from_ir(ir) == pytest.approx(0.5, rel=0.15)
    assert not torch.allclose(out, x, atol=1e-3)
    # that IR is room_impulse's (0.5 s long), and the output is convolve's
    rt = room_impulse(0.5, SR, _after_draws(7))
    assert rt.numel() == int(0.5 * SR) and torch.allclose(ir[: rt.numel()], rt, atol=1e-6)
    assert float(ir[rt.numel() :].abs().max()) < 1e-6  # FFT round-off only
    assert torch.allclose(convolve(x, rt), out, atol=1e-5)


def _after_draws(seed: int) -> random.Random:
    """The rng as augment_wave hands it to room_impulse (4 voice draws, reverb's 2)."""
    rng = random.Random(seed)
    for _ in range(4):
        rng.random()
    rng.random(), rng.uniform(0.5, 0.5)
    return rng


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_noise_lands_at_the_drawn_snr(kind, snr):
    x = speechlike()
    cfg = only(noise_p=1.0, noise_snr_db=(snr, snr), noise_kinds=(kind,))
    out = augment_wave(x, cfg, random.Random(3))
    measured = 10 * math.log10(float(x.pow(2).mean()) / float((out - x).pow(2).mean()))
    assert measured == pytest.approx(snr, abs=0.1)


def test_noise_colours_tilt_towards_low_frequencies():
    gen = torch.Generator().manual_seed(0)
    freqs = torch.fft.rfftfreq(SR, 1 / SR)

    def low_share(kind):
        power = torch.fft.rfft(coloured_noise(SR, kind, gen)).abs() ** 2
        return float(power[freqs < 500].sum() / power.sum())

    white, pink, brown = low_share("white"), low_share("pink"), low_share("brown")
    assert white < 0.1 < pink < brown  # white: 500/8000 of the power; 1/f and 1/f^2 more


def band_energy(w: torch.Tensor, inside: bool) -> float:
    power = torch.fft.rfft(w).abs() ** 2
    f = torch.fft.rfftfreq(w.numel(), 1 / SR)
    mask = (f >= 300) & (f <= 3400)
    return float(power[mask if inside else ~mask].sum())


def test_band_limit_removes_energy_outside_the_telephone_band():
    x = 0.1 * torch.randn(SR, generator=torch.Generator().manual_seed(1))
    cfg = only(bandlimit_p=1.0, bandlimit_low_hz=(300.0, 300.0), bandlimit_high_hz=(3400.0, 3400.0))
    out = augment_wave(x, cfg, random.Random(0))
    drop = 10 * math.log10(band_energy(x, False) / max(band_energy(out, False), 1e-30))
    assert drop > 60
    assert band_energy(out, True) == pytest.approx(band_energy(x, True), rel=0.02)


def test_disfluency_lengthens_the_audio_and_keeps_the_fluent_transcript(tmp_path):
    from lorakit.data.manifest import Utterance
    from lorakit.speech.whisper.build import tiny_whisper
    from lorakit.speech.whisper.features import SpeechDataset

    x = speechlike()
    pauses = only(disfluency_p=1.0, max_pauses=2, repeat_p=0.0, pause_s=(0.3, 0.3))
    repeat = only(disfluency_p=1.0, max_pauses=0, repeat_p=1.0, repeat_s=(0.2, 0.2))
    for cfg, least in ((pauses, 0), (repeat, int(0.25 * SR))):
        lengths = [augment_wave(x, cfg, random.Random(s)).numel() for s in range(8)]
        assert min(lengths) >= x.numel() + least and max(lengths) > x.numel() + least
    # a repeat is the audio's own 0.2 s chunk said twice, a short silence between
    out = augment_wave(x, repeat, random.Random(0))
    extra, n = out.numel() - x.numel(), int(0.2 * SR)

    def repeated_at(s):
        return (
            torch.equal(out[:s], x[:s])
            and torch.equal(out[s : s + n], x[s : s + n])
            and not out[s + n : s + extra].any()
            and torch.equal(out[s + extra :], x[s:])
        )

    assert any(repeated_at(s) for s in range(0, x.numel(), 320))

    path = tmp_path / "a.wav"
    sf.write(path, x.numpy(), SR)
    utt = Utterance(id="a", audio=path, text="I want the red ball.", group="child")
    model = tiny_whisper()
    plain = SpeechDataset([utt], model)
    dis = SpeechDataset([utt], model, augment=only(disfluency_p=1.0, repeat_p=1.0))
    assert not dis.deterministic  # else the dataset would skip the augmentation
    torch.manual_seed(0)
    _, mel_d, tok_d = dis[0]
    _, mel_p, tok_p = plain[0]
    assert torch.equal(tok_d, tok_p)
    assert not torch.equal(mel_d, mel_p)


def test_probability_zero_is_identity_and_draws_nothing_new():
    x = speechlike()
    rng = random.Random(5)
    assert torch.equal(augment_wave(x, AugmentConfig(), rng), x)
    ref = random.Random(5)
    for _ in range(4):  # the four voice augmentations' coin flips only
        ref.random()
    assert rng.random() == ref.random()  # runs made before the scene augmentations repeat


def test_scene_augmentations_repeat_under_the_same_seed():
    x = speechlike()
    cfg = only(reverb_p=1.0, noise_p=1.0, bandlimit_p=1.0, disfluency_p=1.0)
    a = augment_wave(x, cfg, random.Random(11))
    b = augment_wave(x, cfg, random.Random(11))
    c = augment_wave(x, cfg, random.Random(12))
    assert torch.equal(a, b)
    assert a.shape != c.shape or not torch.equal(a, c)
    assert float(a.abs().max()) <= 0.95 + 1e-6


@pytest.mark.parametrize(
    "bad",
    [
        {"reverb_p": 1.5},
        {"noise_snr_db": (20.0, 5.0)},
        {"noise_kinds": ("white", "traffic")},
        {"noise_kinds": ()},
        {"bandlimit_low_hz": (300.0, 4000.0)},
        {"bandlimit_high_hz": (3000.0, 9000.0)},
        {"reverb_rt60": (0.0, 0.5)},
        {"max_pauses": -1},
        {"repeat_s": (0.0, 0.2)},
    ],
)
def test_bad_scene_config_is_one_line(bad):
    with pytest.raises(ValueError) as e:
        AugmentConfig(**bad)
    assert "\n" not in str(e.value) and "augment" in str(e.value)


def test_loud_output_is_scaled_below_clipping_only_when_augmented():
    x = speechlike()
    x = x * (1.2 / float(x.abs().max()))  # over full scale already
    assert torch.equal(augment_wave(x, AugmentConfig(), random.Random(0)), x)
    out = augment_wave(x, only(noise_p=1.0, noise_snr_db=(0.0, 0.0)), random.Random(0))
    assert float(out.abs().max()) == pytest.approx(0.95)


def test_a_run_saved_before_the_scene_augmentations_resumes_unless_one_is_turned_on():
    import copy

    import yaml

    from lorakit.data.audio_config import scene_defaults
    from lorakit.data.runs import check_same_config
    from lorakit.speech.whisper.config import DEFAULTS

    new = yaml.safe_load(yaml.safe_dump(DEFAULTS))  # as config.yaml holds it
    saved = copy.deepcopy(new)
    for key in scene_defaults():
        del saved["augment"][key.split(".")[1]]
    check_same_config(saved, new, "run")
    new["augment"]["reverb_p"] = 0.5
    with pytest.raises(ValueError, match=r"augment\.reverb_p \(None -> 0\.5\)"):
        check_same_config(saved, new, "run")
