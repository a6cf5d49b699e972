"""Transcription with Whisper's own decoder (greedy or beam search), batched.

    texts = transcribe(model, ["a.wav", "b.flac"], DecodeConfig(beam_size=5))

Audio is any format ffmpeg reads, resampled to 16 kHz and padded/trimmed to the
encoder's context (30 s for real models; longer audio is refused, naming the file).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import whisper
from torch import Tensor
from whisper.model import Whisper

from lorakit.data.audio import SAMPLE_RATE, load_audio

from .features import log_mel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeConfig:
    """The ``eval:`` decoding options. ``beam_size`` None = greedy."""

    beam_size: int | None = None
    batch_size: int = 8
    sample_len: int | None = 96  # max tokens per utterance (Whisper's default: 224)
    language: str = "en"
    max_duration: float = 30.0

    def options(self, model: Whisper) -> whisper.DecodingOptions:
        if self.beam_size is not None and self.beam_size < 1:
            raise ValueError(f"eval.beam_size must be >= 1 or null (greedy), got {self.beam_size}")
        sample_len = min(self.sample_len or model.dims.n_text_ctx // 2, model.dims.n_text_ctx // 2)
        return whisper.DecodingOptions(
            language=self.language if model.is_multilingual else "en",
            without_timestamps=True,
            fp16=False,
            beam_size=self.beam_size,
            sample_len=sample_len,
        )


def max_seconds(model: Whisper, cfg: DecodeConfig) -> float:
    return min(
        cfg.max_duration, 2 * model.dims.n_audio_ctx * whisper.audio.HOP_LENGTH / SAMPLE_RATE
    )


def load_mels(model: Whisper, paths: list[str | Path], cfg: DecodeConfig) -> Tensor:
    """``(N, n_mels, frames)`` log-mels of the audio files."""
    limit = max_seconds(model, cfg)
    return torch.stack([log_mel(load_audio(p, max_duration=limit), model) for p in paths])


@torch.no_grad()
def encode(model: Whisper, mels: Tensor, batch_size: int = 8) -> Tensor:
    """Encoder outputs ``(N, n_audio_ctx, d)``; pass them to ``decode`` to decode several
    times (e.g. with and without an adapter that leaves the encoder alone)."""
    device = next(model.parameters()).device
    return torch.cat(
        [
            model.encoder(mels[i : i + batch_size].to(device)).cpu()
            for i in range(0, len(mels), batch_size)
        ]
    )


@torch.no_grad()
def decode(
    model: Whisper, mels_or_features: Tensor, cfg: DecodeConfig, progress: bool = False
) -> list[str]:
    """Texts for ``(N, n_mels, frames)`` mels or ``(N, n_audio_ctx, d)`` encoder outputs."""
    device = next(model.parameters()).device
    options = cfg.options(model)
    was_training = model.training
    model.eval()
    texts: list[str] = []
    try:
        # whisper 20250625's beam search breaks on batches > 1 (kv-cache shapes): one at a time
        step = cfg.batch_size if cfg.beam_size is None else 1
        for i in range(0, len(mels_or_features), step):
            batch = mels_or_features[i : i + step].to(device)
            texts += [r.text.strip() for r in whisper.decode(model, batch, options)]
            if progress:
                log.info("decoded %d / %d utterances", len(texts), len(mels_or_features))
    finally:
        model.train(was_training)
    return texts


def transcribe(
    model: Whisper, paths: list[str | Path], cfg: DecodeConfig | None = None
) -> list[str]:
    cfg = cfg or DecodeConfig()
    return decode(model, load_mels(model, paths, cfg), cfg)
