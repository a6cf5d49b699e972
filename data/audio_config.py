"""The speech augmentation config (``augment:``), importable without torch: the CLI checks
it before the speech pipeline (and torch) is imported. The transforms are ``audio.py``'s."""

from __future__ import annotations

from dataclasses import dataclass


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

    def __post_init__(self):
        for name in ("pitch_semitones", "formant_alpha", "tempo_rate", "speed_factor"):
            value = tuple(getattr(self, name))
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"augment.{name} must be [low, high], got {value}")
            setattr(self, name, value)
        for name in ("pitch_p", "formant_p", "tempo_p", "speed_p", "specaug_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"augment.{name} must be a probability in [0, 1]")
        if min(self.formant_alpha) <= 0 or min(self.tempo_rate) <= 0 or min(self.speed_factor) <= 0:
            raise ValueError("augment: formant_alpha, tempo_rate and speed_factor must be > 0")

