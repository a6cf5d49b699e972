"""Transcription with Whisper's own decoder (greedy or beam search), batched, with
Whisper's temperature fallback on degenerate (looping or unsure) transcripts (fallback.py;
``DecodeConfig(fallback=False)`` turns it off).

    texts = transcribe(model, ["a.wav", "b.flac"], DecodeConfig(beam_size=5))

Audio is any format ffmpeg reads, resampled to 16 kHz and padded/trimmed to the
encoder's context (30 s for real models; longer audio is refused, naming the file).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import whisper
from torch import Tensor
from whisper.model import Whisper

from lorakit.data.audio import SAMPLE_RATE, load_audio

from .config import DecodeConfig
from .fallback import Attempt, decode_with_fallback
from .features import log_mel

log = logging.getLogger(__name__)


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
    cfg.options(model)  # checks the options before any work
    was_training = model.training
    model.eval()
    texts: list[str] = []
    try:
        # whisper 20250625's beam search breaks on batches > 1 (kv-cache shapes): one at a time
        step = cfg.batch_size if cfg.beam_size is None else 1
        for i in range(0, len(mels_or_features), step):
            batch = mels_or_features[i : i + step].to(device)
            texts += decode_with_fallback(_runner(model, batch, cfg), len(batch), cfg.rule())
            if progress:
                log.info("decoded %d / %d utterances", len(texts), len(mels_or_features))
    finally:
        model.train(was_training)
    return texts


def _runner(model: Whisper, batch: Tensor, cfg: DecodeConfig):
    """``run_at(indices, T)`` for ``decode_with_fallback``: whisper.decode of those rows of
    ``batch`` at temperature ``T``. At ``T > 0`` every row is repeated ``best_of`` times
    (whisper's own ``best_of`` breaks on batches > 1) and the sample with the highest
    ``sum log p / len`` (whisper's ranking) is kept; sampling is seeded by ``cfg.seed``, ``T``."""

    def run_at(rows: list[int], temperature: float) -> list[Attempt]:
        draws = 1 if temperature == 0 else cfg.best_of
        options = cfg.options(model, temperature)
        with torch.random.fork_rng(devices=[batch.device] if batch.is_cuda else []):
            torch.manual_seed(cfg.seed + round(100 * temperature))
            results = whisper.decode(model, batch[rows].repeat_interleave(draws, 0), options)
        out = []
        for k in range(len(rows)):
            group = results[k * draws : (k + 1) * draws]
            r = max(
                group, key=lambda r: r.avg_logprob * (len(r.tokens) + 1) / max(len(r.tokens), 1)
            )
            out.append(Attempt(r.text.strip(), r.avg_logprob, temperature))
        return out

    return run_at


def transcribe(
    model: Whisper, paths: list[str | Path], cfg: DecodeConfig | None = None
) -> list[str]:
    cfg = cfg or DecodeConfig()
    return decode(model, load_mels(model, paths, cfg), cfg)
