"""The speech augmentation config (``augment:``), importable without torch: the CLI checks
it before the speech pipeline (and torch) is imported. The transforms are ``audio.py``'s."""

from __future__ import annotations

from dataclasses import dataclass, fields

NOISE_KINDS = ("white", "pink", "brown", "babble")


@dataclass
class AugmentConfig:
    """Child-speech augmentation: each transform fires with its probability ``*_p`` and
    draws its amount uniformly from its range."""

    pitch_p: float = 0.0
    pitch_semitones: tuple[float, float] = (2.0, 6.0)
    formant_p: float = 0.0
    formant_alpha: tuple[float, float] = (1.05, 1.25)
    tempo_p: float = 0.0
    tempo_rate: tuple[float, float] = (0.85, 1.15)
    speed_p: float = 0.0
    speed_factor: tuple[float, float] = (0.9, 1.1)
    specaug_p: float = 0.0
    freq_masks: int = 2
    freq_width: int = 10
    time_masks: int = 2
    time_width: int = 40
    # the recording scene (lorakit.data.audio_scene): all off by default
    reverb_p: float = 0.0
    reverb_rt60: tuple[float, float] = (0.2, 0.8)  # seconds to decay 60 dB
    noise_p: float = 0.0
    noise_snr_db: tuple[float, float] = (5.0, 25.0)
    noise_kinds: tuple[str, ...] = ("white", "pink", "brown", "babble")
    bandlimit_p: float = 0.0
    bandlimit_low_hz: tuple[float, float] = (100.0, 400.0)  # telephone: 300
    bandlimit_high_hz: tuple[float, float] = (3000.0, 7000.0)  # telephone: 3400
    disfluency_p: float = 0.0
    max_pauses: int = 2
    pause_s: tuple[float, float] = (0.2, 0.7)
    repeat_p: float = 0.5  # of a disfluent utterance: one chunk said twice (transcript fluent)
    repeat_s: tuple[float, float] = (0.15, 0.4)

    PROBABILITIES = (
        "pitch_p", "formant_p", "tempo_p", "speed_p", "specaug_p",
        "reverb_p", "noise_p", "bandlimit_p", "disfluency_p", "repeat_p",
    )  # fmt: skip
    RANGES = (
        "pitch_semitones", "formant_alpha", "tempo_rate", "speed_factor", "reverb_rt60",
        "noise_snr_db", "bandlimit_low_hz", "bandlimit_high_hz", "pause_s", "repeat_s",
    )  # fmt: skip

    def __post_init__(self):
        for name in self.RANGES:
            value = tuple(getattr(self, name))
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"augment.{name} must be [low, high], got {value}")
            setattr(self, name, value)
        for name in self.PROBABILITIES:
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment.{name} must be a probability in [0, 1]")
        if min(self.formant_alpha) <= 0 or min(self.tempo_rate) <= 0 or min(self.speed_factor) <= 0:
            raise ValueError("augment: formant_alpha, tempo_rate and speed_factor must be > 0")
        self._check_scene()

    def _check_scene(self) -> None:
        kinds = tuple(self.noise_kinds)
        if not kinds or set(kinds) - set(NOISE_KINDS):
            raise ValueError(
                f"augment.noise_kinds must be some of {list(NOISE_KINDS)}, got {list(kinds)}"
            )
        self.noise_kinds = kinds
        if self.reverb_rt60[0] <= 0 or self.reverb_rt60[1] > 3:
            raise ValueError("augment.reverb_rt60 must lie in (0, 3] seconds")
        if self.bandlimit_low_hz[0] < 0 or self.bandlimit_low_hz[1] >= self.bandlimit_high_hz[0]:
            raise ValueError("augment: bandlimit_low_hz must be >= 0 and below bandlimit_high_hz")
        if self.bandlimit_high_hz[1] > 8000:
            raise ValueError("augment.bandlimit_high_hz must be <= 8000 (16 kHz audio)")
        if self.pause_s[0] < 0 or self.repeat_s[0] <= 0 or self.max_pauses < 0:
            raise ValueError("augment: pause_s >= 0, repeat_s > 0 and max_pauses >= 0")


def scene_defaults() -> dict:
    """``{"augment.<field>": default}`` of the recording-scene fields, as ``config.yaml``
    holds them: a run saved before they existed resumes when they keep these values."""
    names = [f.name for f in fields(AugmentConfig)]
    scene = names[names.index("reverb_p") :]
    default = AugmentConfig()
    return {
        f"augment.{n}": list(v) if isinstance(v := getattr(default, n), tuple) else v for n in scene
    }
