"""Spoken sentences with no download: Debian's ``espeak-ng`` in many adult voices (8 English
accents x 12 voice variants) and prosodies, and child-like versions spread over pitch,
formant (vocal-tract length) and tempo, made with espeak's pitch/speed parameters plus
``lorakit.data.audio``'s pitch shift and formant warping.

    manifests = generate_corpus("cache/speech", {"train": SplitSpec(240, ("child",), 2),
                                                 "val": SplitSpec(30, ("adult", "child")),
                                                 "test": SplitSpec(40, ("adult", "child"))})

Sentences come from the project's sentence bank (``data/sentences/bank.txt``, 370 natural
sentences children say and hear); each split gets its own sentences, so no sentence is in
two splits. Writes 16 kHz WAV files and one JSONL manifest per split (``group`` = adult /
child, ``speaker`` = the espeak voice). A corpus already on disk with the same settings is
reused (``corpus.json`` records them). The held-out set (another engine, voices and
sentences) is ``lorakit.data.heldout``.
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
from .generated import install, remove_stale
from .manifest import Utterance, write_manifest

SENTENCE_DIR = Path(__file__).with_name("sentences")
ENGINE = "espeak-ng"
ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
FEMALE = ("f1", "f2", "f3", "f4", "f5")
ADULT_VOICES = tuple(f"{a}+{v}" for a in ACCENTS for v in MALE + FEMALE)
CHILD_VOICES = tuple(f"{a}+{v}" for a in ACCENTS for v in FEMALE + ("m1", "m2", "m3"))


def load_sentences(name: str = "bank") -> list[str]:
    """The sentences of ``data/sentences/<name>.txt`` (comments and blank lines skipped)."""
    path = SENTENCE_DIR / f"{name}.txt"
    if not path.is_file():
        raise ValueError(f"no sentence list {path}")
    lines = [s.strip() for s in path.read_text(encoding="utf-8").splitlines()]
    return [s for s in lines if s and not s.startswith("#")]


def sentence_key(text: str) -> str:
    """Case- and punctuation-free form, for overlap checks between sentence lists."""
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


@dataclass(frozen=True)
class SplitSpec:
    """``n_sentences`` of the bank, each spoken ``versions`` times per group."""

    n_sentences: int
    groups: tuple[str, ...] = ("adult", "child")
    versions: int = 1


@dataclass
class VoiceStyle:
    """How one group sounds: espeak voices/pitch/speed/word gap, then audio-domain transforms."""

    voices: tuple[str, ...]
    espeak_pitch: tuple[int, int] = (30, 70)
    espeak_speed: tuple[int, int] = (140, 185)
    word_gap: tuple[int, int] = (0, 3)
    semitones: tuple[float, float] = (0.0, 0.0)
    formant_alpha: tuple[float, float] = (1.0, 1.0)
    tempo: tuple[float, float] = (1.0, 1.0)


@dataclass
class CorpusStyle:
    adult: VoiceStyle = field(default_factory=lambda: VoiceStyle(ADULT_VOICES))
    child: VoiceStyle = field(
        default_factory=lambda: VoiceStyle(
            CHILD_VOICES,
            espeak_pitch=(65, 99),
            espeak_speed=(130, 190),
            semitones=(1.5, 6.0),
            formant_alpha=(1.08, 1.35),
            tempo=(0.8, 1.15),
        )
    )


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences of the bank in a seeded random order."""
    bank = load_sentences("bank")
    if n > len(bank):
        raise ValueError(f"make_sentences: the bank has {len(bank)} sentences, asked for {n}")
    return random.Random(seed).sample(bank, n)


def split_sentences(splits: dict[str, SplitSpec], seed: int = 0) -> dict[str, list[str]]:
    """The bank sentences of every split: one seeded draw cut into consecutive pieces, so no
    sentence is in two splits."""
    drawn = make_sentences(sum(s.n_sentences for s in splits.values()), seed)
    out, start = {}, 0
    for name, spec in splits.items():
        out[name] = drawn[start : start + spec.n_sentences]
        start += spec.n_sentences
    return out


def espeak(text: str, voice: str, pitch: int, speed: int, gap: int = 0) -> torch.Tensor:
    """Speak ``text`` with espeak-ng; returns 16 kHz mono float32 ``(T,)``."""
    if shutil.which("espeak-ng") is None:
        raise ValueError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-g", str(gap)]
    return _synthesise(cmd, text, f"espeak-ng voice {voice!r}")


def _synthesise(cmd: list[str], text: str, what: str) -> torch.Tensor:
    """Run a TTS command line that takes ``-w/-o WAV`` then the text; ``(T,)`` at 16 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "say.wav"
        # The text never reaches the command line as a bare argument (a client's "-f/etc/..."
        # would be an option): espeak-ng reads it on stdin, flite takes it as -t's value.
        if cmd[0] == "flite":
            if text.lstrip().startswith("-"):
                raise ValueError("text to speak must not start with '-'")
            args, stdin = cmd + ["-t", text, "-o", str(wav)], None
        else:
            args, stdin = cmd + ["--stdin", "-w", str(wav)], text.encode()
        res = subprocess.run(args, input=stdin, capture_output=True)
        if res.returncode != 0 or not wav.is_file():
            raise ValueError(f"{what} failed: {res.stderr.decode(errors='replace').strip()}")
        data, sr = sf.read(wav, dtype="float32")
    wave = torch.from_numpy(data if data.ndim == 1 else data.mean(1))
    return resample(wave, sr, SAMPLE_RATE)


def childlike(wave: torch.Tensor, semitones: float, alpha: float, tempo: float) -> torch.Tensor:
    """Shorter vocal tract (formants x ``alpha``), higher pitch, other tempo; peak 0.9."""
    if alpha != 1.0:
        wave = formant_warp(wave, alpha)
    if semitones != 0.0:
        wave = pitch_shift(wave, semitones)
    if tempo != 1.0:
        wave = time_stretch(wave, tempo)
    return 0.9 * wave / wave.abs().max().clamp_min(1e-6)


def speak(text: str, style: VoiceStyle, rng: random.Random) -> tuple[torch.Tensor, str]:
    """One utterance of ``text`` in a voice and prosody drawn from ``style``: ``((T,), voice)``."""
    voice = rng.choice(style.voices)
    wave = espeak(
        text,
        voice,
        rng.randint(*style.espeak_pitch),
        rng.randint(*style.espeak_speed),
        rng.randint(*style.word_gap),
    )
    semitones, alpha, tempo = (
        rng.uniform(*style.semitones),
        rng.uniform(*style.formant_alpha),
        rng.uniform(*style.tempo),
    )
    return childlike(wave, semitones, alpha, tempo), voice


def _settings_hash(splits: dict[str, SplitSpec], style: CorpusStyle, seed: int) -> str:
    blob = json.dumps(
        {
            "splits": {k: asdict(v) for k, v in splits.items()},
            "style": asdict(style),
            "seed": seed,
            "bank": hashlib.sha1("\n".join(load_sentences("bank")).encode()).hexdigest(),
            "version": 2,
        },
        sort_keys=True,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def corpus_is_current(out_dir: Path, digest: str, manifests: dict[str, Path]) -> bool:
    try:
        recorded = json.loads((out_dir / "corpus.json").read_text()).get("hash")
    except (OSError, ValueError, AttributeError):  # missing or not ours
        return False
    return recorded == digest and all(p.is_file() for p in manifests.values())


def generate_corpus(
    out_dir: str | Path,
    splits: dict[str, SplitSpec],
    seed: int = 0,
    style: CorpusStyle | None = None,
    progress=None,
) -> dict[str, Path]:
    """Speak every split's sentences ``versions`` times in each of its groups; returns
    ``{split: manifest}``. Sentences are drawn once for all splits, so splits never share one.
    ``progress(done, total)`` is called after each utterance when given.
    """
    style = style or CorpusStyle()
    for name, spec in splits.items():
        bad = [g for g in spec.groups if g not in ("adult", "child")]
        if bad or spec.n_sentences < 1 or spec.versions < 1:
            raise ValueError(
                f"split {name}: groups must be adult/child (got {list(spec.groups)}), "
                "n_sentences and versions >= 1"
            )
    out_dir = Path(out_dir)
    digest = _settings_hash(splits, style, seed)
    manifests = {name: out_dir / f"{name}.jsonl" for name in splits}
    if corpus_is_current(out_dir, digest, manifests):
        remove_stale(out_dir)
        return manifests
    stamp = {"hash": digest, "seed": seed, "splits": {k: asdict(v) for k, v in splits.items()}}
    # written beside out_dir, then renamed in (corpus.json last): a kill leaves no half corpus
    install(out_dir, lambda tmp: _speak_corpus(tmp, splits, seed, style, progress, stamp),
            "corpus.json")  # fmt: skip
    return manifests


def _speak_corpus(out_dir: Path, splits, seed: int, style, progress, stamp: dict) -> None:
    sentences = split_sentences(splits, seed)
    rng = random.Random(seed)
    total = sum(s.n_sentences * len(s.groups) * s.versions for s in splits.values())
    done = 0
    for name, spec in splits.items():
        utts = []
        for i, text in enumerate(sentences[name]):
            for group in spec.groups:
                for v in range(spec.versions):
                    wave, voice = speak(text, getattr(style, group), rng)
                    path = out_dir / "wav" / name / f"{name}-{i:04d}-{group}-{v}.wav"
                    utts.append(_write(path, wave, text, f"{ENGINE}:{voice}", group))
                    done += 1
                    if progress is not None:
                        progress(done, total)
        write_manifest(out_dir / f"{name}.jsonl", utts)
    (out_dir / "corpus.json").write_text(json.dumps(stamp, indent=2))


def _write(path: Path, wave: torch.Tensor, text: str, speaker: str, group: str) -> Utterance:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.numpy(), SAMPLE_RATE, subtype="PCM_16")
    return Utterance(
        id=path.stem,
        audio=path.resolve(),
        text=text,
        speaker=speaker,
        group=group,
        duration=round(wave.numel() / SAMPLE_RATE, 3),
    )
