"""Spoken sentences with no download: Debian's ``espeak-ng`` in several adult voices, and
child-like versions (higher pitch, shorter vocal tract, other tempo) made with espeak's
pitch/speed parameters plus ``lorakit.data.audio``'s pitch shift and formant warping.

    manifests = generate_corpus("cache/speech", {"train": SplitSpec(24, ("child",)),
                                                 "test": SplitSpec(12, ("adult", "child"))})

Writes 16 kHz WAV files and one JSONL manifest per split (``group`` = adult / child).
Sentences of different splits never overlap. A corpus already on disk with the same
settings is reused (``corpus.json`` records them).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf
import torch

from .audio import SAMPLE_RATE, formant_warp, pitch_shift, resample, time_stretch
from .manifest import Utterance, write_manifest

SUBJECTS = [
    "the dog",
    "my mother",
    "the teacher",
    "a little girl",
    "the farmer",
    "my brother",
    "the cat",
    "our class",
    "the boy",
    "her friend",
    "the bird",
    "my sister",
    "the old man",
    "the baby",
]
VERBS = [
    "likes",
    "found",
    "wants",
    "painted",
    "carried",
    "opened",
    "saw",
    "cleaned",
    "bought",
    "lost",
    "drew",
    "kicked",
    "fixed",
    "hid",
]
OBJECTS = [
    "a red ball",
    "the green door",
    "a big box",
    "the blue car",
    "some fresh bread",
    "a new book",
    "the small boat",
    "a yellow kite",
    "the wooden chair",
    "a warm coat",
    "the garden gate",
    "a paper hat",
    "the kitchen window",
    "a bag of apples",
]
ENDINGS = [
    "",
    " today",
    " yesterday",
    " in the morning",
    " after school",
    " at the park",
    " last night",
]

ADULT_VOICES = ("en-us+m3", "en-gb+m1", "en-us+f2", "en+f4")
CHILD_VOICES = ("en-us+f3", "en-gb+f1", "en-us+m2")


@dataclass(frozen=True)
class SplitSpec:
    n_sentences: int
    groups: tuple[str, ...] = ("adult", "child")


@dataclass
class VoiceStyle:
    """How one group sounds: espeak voices/pitch/speed, then audio-domain transforms."""

    voices: tuple[str, ...]
    espeak_pitch: tuple[int, int] = (40, 60)
    espeak_speed: tuple[int, int] = (150, 170)
    semitones: tuple[float, float] = (0.0, 0.0)
    formant_alpha: tuple[float, float] = (1.0, 1.0)
    tempo: tuple[float, float] = (1.0, 1.0)


@dataclass
class CorpusStyle:
    adult: VoiceStyle = field(default_factory=lambda: VoiceStyle(ADULT_VOICES))
    child: VoiceStyle = field(
        default_factory=lambda: VoiceStyle(
            CHILD_VOICES,
            espeak_pitch=(75, 95),
            espeak_speed=(160, 190),
            semitones=(2.5, 5.0),
            formant_alpha=(1.15, 1.3),
            tempo=(0.9, 1.15),
        )
    )


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct simple English sentences (subject, verb, object, optional ending)."""
    rng = random.Random(seed)
    combos = [(s, v, o, e) for s in SUBJECTS for v in VERBS for o in OBJECTS for e in ENDINGS]
    if n > len(combos):
        raise ValueError(f"make_sentences: at most {len(combos)} distinct sentences, asked for {n}")
    picked = rng.sample(combos, n)
    return [f"{s[0].upper()}{s[1:]} {v} {o}{e}." for s, v, o, e in picked]


def espeak(text: str, voice: str, pitch: int, speed: int) -> torch.Tensor:
    """Speak ``text`` with espeak-ng; returns 16 kHz mono float32 ``(T,)``."""
    if shutil.which("espeak-ng") is None:
        raise ValueError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "say.wav"
        cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav), text]
        res = subprocess.run(cmd, capture_output=True)
        if res.returncode != 0 or not wav.is_file():
            raise ValueError(
                f"espeak-ng failed for voice {voice!r}: {res.stderr.decode(errors='replace')}"
            )
        data, sr = sf.read(wav, dtype="float32")
    wave = torch.from_numpy(data if data.ndim == 1 else data.mean(1))
    return resample(wave, sr, SAMPLE_RATE)


def speak(text: str, style: VoiceStyle, rng: random.Random) -> torch.Tensor:
    """One utterance of ``text`` in a voice drawn from ``style``; ``(T,)`` at 16 kHz."""
    wave = espeak(
        text,
        rng.choice(style.voices),
        rng.randint(*style.espeak_pitch),
        rng.randint(*style.espeak_speed),
    )
    semitones, alpha, tempo = (
        rng.uniform(*style.semitones),
        rng.uniform(*style.formant_alpha),
        rng.uniform(*style.tempo),
    )
    if alpha != 1.0:
        wave = formant_warp(wave, alpha)
    if semitones != 0.0:
        wave = pitch_shift(wave, semitones)
    if tempo != 1.0:
        wave = time_stretch(wave, tempo)
    return 0.9 * wave / wave.abs().max().clamp_min(1e-6)


def _settings_hash(splits: dict[str, SplitSpec], style: CorpusStyle, seed: int) -> str:
    blob = json.dumps(
        {
            "splits": {k: asdict(v) for k, v in splits.items()},
            "style": asdict(style),
            "seed": seed,
            "version": 1,
        },
        sort_keys=True,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def generate_corpus(
    out_dir: str | Path,
    splits: dict[str, SplitSpec],
    seed: int = 0,
    style: CorpusStyle | None = None,
    progress=None,
) -> dict[str, Path]:
    """Speak every split's sentences in each of its groups; returns ``{split: manifest}``.

    Each sentence is spoken once per group (so adult and child rows of a split share text).
    ``progress(done, total)`` is called after each utterance when given.
    """
    style = style or CorpusStyle()
    out_dir = Path(out_dir)
    digest = _settings_hash(splits, style, seed)
    manifests = {name: out_dir / f"{name}.jsonl" for name in splits}
    stamp = out_dir / "corpus.json"
    if (
        stamp.is_file()
        and json.loads(stamp.read_text()).get("hash") == digest
        and all(p.is_file() for p in manifests.values())
    ):
        return manifests
    total_sentences = sum(s.n_sentences for s in splits.values())
    sentences = make_sentences(total_sentences, seed)
    rng = random.Random(seed)
    total, done, start = sum(s.n_sentences * len(s.groups) for s in splits.values()), 0, 0
    for name, spec in splits.items():
        utts = []
        for i, text in enumerate(sentences[start : start + spec.n_sentences]):
            for group in spec.groups:
                if group not in ("adult", "child"):
                    raise ValueError(f"split {name}: unknown group {group!r} (adult or child)")
                wave = speak(text, getattr(style, group), rng)
                path = out_dir / "wav" / name / f"{name}-{i:04d}-{group}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wave.numpy(), SAMPLE_RATE, subtype="PCM_16")
                utts.append(
                    Utterance(
                        id=path.stem,
                        audio=path.resolve(),
                        text=text,
                        speaker=f"{group}-{i % 4}",
                        group=group,
                        duration=round(wave.numel() / SAMPLE_RATE, 3),
                    )
                )
                done += 1
                if progress is not None:
                    progress(done, total)
        start += spec.n_sentences
        write_manifest(manifests[name], utts)
    stamp.write_text(
        json.dumps(
            {"hash": digest, "seed": seed, "splits": {k: asdict(v) for k, v in splits.items()}},
            indent=2,
        )
    )
    return manifests
