"""Reading the kids' speech corpora for ``lorakit reproduce kids-asr``: the MyST and CSLU OGI
Kids' layouts as published, the transcript normaliser, the filters and the speaker-disjoint
split (see :mod:`lorakit.speech.whisper.reproduce` for the layouts and the recipe).

Options arrive as the validated dict of ``reproduce._opts``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.data.manifest import Utterance

MYST_SPLITS = {"train": "train", "val": "development", "test": "test"}
OGI_SPLIT = (0.7, 0.075, 0.225)  # SPAPL: 30 % of speakers held out, 25 % of those dev

# ---------------------------------------------------------------- transcripts

UNINTELLIGIBLE = re.compile(r"\(\(\s*\)\)|\(\*\)")
_TAG = re.compile(r"<[^<>]*>")
_ANNOTATION = re.compile(r"\[[^\]]*\]|\{[^}]*\}")
_PUNCT = re.compile(r"[^\w\s']")


@dataclass(frozen=True)
class Normaliser:
    """How a raw transcript line becomes a training reference (see the module docstring)."""

    false_starts: str = "drop"
    lowercase: bool = True
    strip_punctuation: bool = True

    def __call__(self, raw: str) -> tuple[str, bool]:
        """``(text, unintelligible)``: the cleaned reference (may be empty: noise only) and
        whether the line marked an unintelligible stretch."""
        text = raw.replace("\u00a0", " ").replace("\ufeff", "")
        text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
        unintelligible = bool(UNINTELLIGIBLE.search(text))
        text = UNINTELLIGIBLE.sub(" ", text)
        text = _TAG.sub(" ", text)  # <noise>, <no_signal>, <side_speech>, ...
        text = _ANNOTATION.sub(" ", text)
        text = re.sub(r"[()+*_/]", " ", text)  # ((guess)) / (um) keep their words
        words = []
        for word in text.split():
            if word.endswith("-") and len(word.strip("-")) > 0:  # false start: "th-"
                if self.false_starts == "drop":
                    continue
                word = word.rstrip("-")
            words.append(word)
        text = " ".join(words)
        if self.strip_punctuation:
            text = _PUNCT.sub(" ", text).replace(" '", " ").replace("' ", " ")
            text = " ".join(w.strip("'") for w in text.split())
        if self.lowercase:
            text = text.lower()
        return " ".join(text.split()), unintelligible


@dataclass
class Raw:
    """One candidate utterance before the filters."""

    id: str
    audio: Path
    speaker: str
    transcript: str | None  # None: untranscribed
    duration: float = 0.0


@dataclass
class Prep:
    """The kept utterances of a split and what each filter dropped."""

    kept: list[Utterance] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def apply_filters(raws: list[Raw], o: dict) -> Prep:
    """Normalise each transcript and keep what passes every filter (reasons counted)."""
    from whisper.normalizers import EnglishTextNormalizer  # what WER is scored after

    norm = Normaliser(o["false_starts"], bool(o["lowercase"]), bool(o["strip_punctuation"]))
    scored = EnglishTextNormalizer()
    prep = Prep()
    for r in raws:
        if r.transcript is None:
            prep.drop("untranscribed")
            continue
        text, unintelligible = norm(r.transcript)
        words = scored(text).split()  # fillers (um, uh, hmm) are not scored
        if not text:
            prep.drop("noise_only")
        elif not words:
            prep.drop("fillers_only")
        elif unintelligible and o["drop_unintelligible"]:
            prep.drop("unintelligible")
        elif r.duration > float(o["max_seconds"]):
            prep.drop("too_long")
        elif r.duration < float(o["min_seconds"]):
            prep.drop("too_short")
        elif len(words) < int(o["min_words"]):
            prep.drop("too_few_words")
        else:
            prep.kept.append(
                Utterance(r.id, r.audio, text, speaker=r.speaker, group="child",
                          duration=round(r.duration, 3))
            )
    return prep


# ---------------------------------------------------------------- reading the releases


def _duration(path: Path) -> float:
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ValueError(f"kids-asr: cannot read audio {path} ({str(e).splitlines()[0]})") from None


def _need(path: Path) -> Path:
    if not path.exists():
        raise ValueError(f"kids-asr: {path} is missing")
    return path


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig", errors="strict")
    except UnicodeDecodeError:
        try:
            return path.read_text(encoding="latin-1")
        except OSError as e:
            raise ValueError(f"kids-asr: cannot read transcript {path} ({e})") from None
    except OSError as e:
        raise ValueError(f"kids-asr: cannot read transcript {path} ({e})") from None


def myst_root(data_root: Path) -> Path:
    """``.../myst_child_conv_speech/data`` (data_root may also be that folder or its parent)."""
    for cand in (data_root / "myst_child_conv_speech" / "data", data_root / "data", data_root):
        if (cand / "train").is_dir():
            return cand
    return _need(data_root / "myst_child_conv_speech" / "data")


def read_myst(data_root: Path) -> dict[str, list[Raw]]:
    """Every turn of the three release folders: ``{train, val, test}``. A .trn without its
    .flac is an error naming the audio; a .flac without a .trn is untranscribed."""
    data = myst_root(Path(data_root))
    out = {}
    for split, folder in MYST_SPLITS.items():
        raws = []
        for student in sorted(p for p in _need(data / folder).iterdir() if p.is_dir()):
            for session in sorted(p for p in student.iterdir() if p.is_dir()):
                stems = {p.stem for p in session.iterdir() if p.suffix.lower() in (".flac", ".trn", ".wav")}
                for stem in sorted(stems):
                    audio = next((session / f"{stem}{s}" for s in (".flac", ".wav")
                                  if (session / f"{stem}{s}").is_file()), None)
                    trn = session / f"{stem}.trn"
                    if audio is None:
                        raise ValueError(f"kids-asr: {session / (stem + '.flac')} is missing (its transcript {trn.name} is there)")
                    text = None
                    if trn.is_file():
                        lines = _read_text(trn).strip().splitlines()
                        text = lines[0] if lines else ""
                    raws.append(Raw(stem, audio, student.name, text, _duration(audio)))
        if not raws:
            raise ValueError(f"kids-asr: {data / folder} has no turns (<student>/<session>/*.flac)")
        out[split] = raws
    return out


_MAP_LINE = re.compile(r'^\s*([0-9A-Za-z]{2})\s+"(.*)"\s*$')


def read_all_map(path: Path) -> dict[str, str]:
    """``docs/all.map``: prompt id (lower case) -> prompt text."""
    prompts = {}
    for k, line in enumerate(_read_text(_need(path)).splitlines(), 1):
        if not line.strip():
            continue
        m = _MAP_LINE.match(line)
        if m is None:
            raise ValueError(f'kids-asr: {path}:{k}: expected \'<ID> "<text>"\', got {line!r}')
        prompts[m.group(1).lower()] = m.group(2)
    return prompts


def read_verified(docs: Path) -> dict[str, int]:
    """File id -> verification mark (1-4) from ``docs/*verified.txt``."""
    lists = sorted(docs.glob("*verified.txt"))
    if not lists:
        raise ValueError(f"kids-asr: {docs}/*verified.txt is missing (needed by ogi_quality)")
    marks = {}
    for lst in lists:
        for k, line in enumerate(_read_text(lst).splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2 or not parts[-1].isdigit():
                raise ValueError(f"kids-asr: {lst}:{k}: expected '<path>.wav <1-4>', got {line!r}")
            listed = (lst.parent / parts[0]) if parts[0].startswith(".") else None
            if listed is not None and not listed.is_file():
                raise ValueError(f"kids-asr: {listed.resolve()} (listed in {lst.name}:{k}) is missing")
            marks[Path(parts[0]).stem.lower()] = int(parts[-1])
    return marks


def read_ogi(data_root: Path, o: dict) -> list[Raw]:
    """Every scripted file with its prompt text (None when the prompt is not in all.map)."""
    root = Path(data_root)
    prompts = read_all_map(root / "docs" / "all.map")
    scripted = _need(root / "speech" / "scripted")
    quality = o["ogi_quality"]
    marks = None if quality == "all" else read_verified(root / "docs")
    raws = []
    for wav in sorted(p for p in scripted.rglob("*") if p.suffix.lower() == ".wav"):
        uid = wav.stem.lower()
        if marks is not None and marks.get(uid) not in quality:
            continue
        text = prompts.get(uid[-3:-1])
        raws.append(Raw(uid, wav, wav.parent.name.lower(), text, _duration(wav)))
    if not raws:
        raise ValueError(f"kids-asr: {scripted} has no <grade>/<block>/<speaker>/*.wav files")
    return raws


def speaker_split(speakers: list[str], fractions, seed: int) -> dict[str, set[str]]:
    """Speaker-disjoint ``{train, val, test}``: the sorted speakers shuffled with ``seed``;
    val and test get at least one speaker each when there are three or more."""
    spk = sorted(set(speakers))
    random.Random(seed).shuffle(spk)
    n = len(spk)
    n_val = round(fractions[1] * n)
    n_test = round(fractions[2] * n)
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
    n_train = n - n_val - n_test
    return {
        "train": set(spk[:n_train]),
        "val": set(spk[n_train:n_train + n_val]),
        "test": set(spk[n_train + n_val:]),
    }


def read_corpus(data_root, o: dict) -> dict[str, list[Raw]]:
    """``{train, val, test}`` candidate utterances of the chosen corpus (every file checked)."""
    root = Path(data_root)
    _need(root)
    if o["corpus"] == "myst":
        return read_myst(root)
    raws = read_ogi(root, o)
    parts = speaker_split([r.speaker for r in raws], o["ogi_split"], int(o["split_seed"]))
    return {s: [r for r in raws if r.speaker in parts[s]] for s in ("train", "val", "test")}
