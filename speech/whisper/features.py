"""From manifest rows to Whisper inputs: log-mel spectrograms and teacher-forcing tokens.

A training item is ``(id, mel (n_mels, frames), tokens (L,))`` where ``tokens`` is
``<|startoftranscript|><|en|><|transcribe|><|notimestamps|> text <|endoftext|>``;
``collate`` pads them into ``inputs``/``labels`` (labels -100 on the prompt and padding).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import whisper
from torch import Tensor
from torch.utils.data import Dataset
from whisper.model import Whisper
from whisper.tokenizer import Tokenizer, get_tokenizer

from lorakit.data.audio import SAMPLE_RATE, AugmentConfig, augment_mel, augment_wave, load_audio
from lorakit.data.manifest import Utterance

IGNORE = -100


def whisper_tokenizer(model: Whisper, language: str = "en") -> Tokenizer:
    if not model.is_multilingual:
        language = "en"
    return get_tokenizer(
        model.is_multilingual,
        num_languages=model.num_languages,
        language=language,
        task="transcribe",
    )


def log_mel(wave: Tensor, model: Whisper) -> Tensor:
    """``(T,)`` 16 kHz -> ``(n_mels, 2 * n_audio_ctx)``: padded/trimmed like Whisper (30 s
    for real models), so the encoder sees exactly its context."""
    frames = 2 * model.dims.n_audio_ctx
    wave = whisper.pad_or_trim(wave, frames * whisper.audio.HOP_LENGTH)
    return whisper.log_mel_spectrogram(wave, n_mels=model.dims.n_mels)


def text_tokens(tokenizer: Tokenizer, text: str, max_len: int, where: str = "") -> list[int]:
    tokens = list(tokenizer.sot_sequence_including_notimestamps) + tokenizer.encode(
        " " + text.strip()
    )
    tokens.append(tokenizer.eot)
    if len(tokens) > max_len:
        raise ValueError(
            f"{where or 'utterance'}: transcript is {len(tokens)} tokens, over the decoder's "
            f"context of {max_len}: split the utterance"
        )
    return tokens


class SpeechDataset(Dataset):
    """Manifest rows as Whisper training items; waveform/mel augmentations when ``augment``."""

    def __init__(
        self,
        utts: list[Utterance],
        model: Whisper,
        language: str = "en",
        augment: AugmentConfig | None = None,
        max_duration: float = 30.0,
        seed: int = 0,
    ):
        self.utts, self.augment, self.seed = utts, augment, seed
        self.tokenizer = whisper_tokenizer(model, language)
        self.prompt_len = len(self.tokenizer.sot_sequence_including_notimestamps)
        self.mel_model = _MelSpec(model)
        self.max_duration = min(
            max_duration, model.dims.n_audio_ctx * 2 * whisper.audio.HOP_LENGTH / SAMPLE_RATE
        )
        self.tokens = [
            text_tokens(self.tokenizer, u.text, model.dims.n_text_ctx, u.where) for u in utts
        ]

    @property
    def deterministic(self) -> bool:
        a = self.augment
        return a is None or max(getattr(a, p) for p in a.PROBABILITIES if p != "repeat_p") == 0

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int):
        u = self.utts[i]
        wave = load_audio(u.audio, max_duration=self.max_duration, where=u.where)
        if not self.deterministic:
            # drawn from torch's RNG, which the training runtime seeds per item
            # (SeededItems), so augmentation repeats exactly after a resume
            rng = random.Random(int(torch.randint(0, 2**62, ())) ^ self.seed)
            wave = augment_wave(wave, self.augment, rng)
            mel = self.mel_model(wave)
            # SpecAugment masks the speech, not the padding up to Whisper's 30 s context
            n = min(mel.shape[1], wave.numel() // whisper.audio.HOP_LENGTH + 1)
            mel[:, :n] = augment_mel(mel[:, :n], self.augment, rng)
        else:
            mel = self.mel_model(wave)
        return u.id, mel, torch.tensor(self.tokens[i])


@dataclass
class _MelSpec:
    model: Whisper

    def __post_init__(self):
        self.frames, self.n_mels = 2 * self.model.dims.n_audio_ctx, self.model.dims.n_mels
        self.model = None  # keep the dataset picklable and light for worker processes

    def __call__(self, wave: Tensor) -> Tensor:
        wave = whisper.pad_or_trim(wave, self.frames * whisper.audio.HOP_LENGTH)
        return whisper.log_mel_spectrogram(wave, n_mels=self.n_mels)


def make_collate(prompt_len: int, pad_id: int):
    """Batch items: ``ids``, ``mels (B, n_mels, frames)``, ``inputs (B, L)``, ``labels (B, L)``."""

    def collate(items):
        ids, mels, toks = zip(*items, strict=True)
        length = max(len(t) for t in toks) - 1
        inputs = torch.full((len(toks), length), pad_id, dtype=torch.long)
        labels = torch.full((len(toks), length), IGNORE, dtype=torch.long)
        for b, t in enumerate(toks):
            inputs[b, : len(t) - 1] = t[:-1]
            labels[b, : len(t) - 1] = t[1:]
            labels[b, : prompt_len - 1] = IGNORE  # the prompt is given, not learned
        return {"ids": list(ids), "mels": torch.stack(mels), "inputs": inputs, "labels": labels}

    return collate
