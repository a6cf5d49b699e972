"""The held-out child-speech evaluation set: another synthesis engine (Debian's ``flite``),
other voices and other sentences than the training corpus (``lorakit.data.speech``).

    manifest = generate_heldout("cache/asr-heldout")   # 48 sentences x (adult, child-like)

Each sentence of ``data/sentences/heldout.txt`` is spoken once by an adult flite voice
(group ``heldout_adult``) and once by a child-like version of another flite voice (group
``heldout_child``): flite's own F0 target raised and duration changed, then a shorter
vocal tract (formant warp) and a little more pitch. Adult WER on it measures forgetting.
Never train or choose a recipe on it. Reused from disk when the settings are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

from .generated import install, remove_stale
from .manifest import write_manifest
from .speech import _synthesise, _write, childlike, corpus_is_current, load_sentences

ENGINE = "flite"
VOICES = ("kal16", "awb", "rms", "slt")
GROUPS = ("heldout_adult", "heldout_child")
# child-like: F0 target (Hz), flite duration stretch, then formant alpha and extra semitones
CHILD_F0 = (210, 290)
CHILD_STRETCH = (0.85, 1.2)
CHILD_ALPHA = (1.1, 1.3)
CHILD_SEMITONES = (0.0, 3.0)


def flite(text: str, voice: str, f0: int | None = None, stretch: float = 1.0):
    """Speak ``text`` with flite; ``f0`` (Hz) sets its intonation target mean. ``(T,)`` 16 kHz."""
    if shutil.which("flite") is None:
        raise ValueError("flite is not installed (Debian: apt-get install flite)")
    cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.3f}"]
    if f0 is not None:
        cmd += ["--setf", f"int_f0_target_mean={f0}"]
    return _synthesise(cmd, text, f"flite voice {voice!r}")


def generate_heldout(out_dir: str | Path, seed: int = 0, progress=None) -> Path:
    """Write the held-out WAVs and ``heldout.jsonl`` into ``out_dir``; returns the manifest."""
    out_dir = Path(out_dir)
    sentences = load_sentences("heldout")
    settings = {
        "seed": seed,
        "voices": VOICES,
        "child": [CHILD_F0, CHILD_STRETCH, CHILD_ALPHA, CHILD_SEMITONES],
        "sentences": hashlib.sha1("\n".join(sentences).encode()).hexdigest(),
        "version": 1,
    }
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    manifest = out_dir / "heldout.jsonl"
    if corpus_is_current(out_dir, digest, {"heldout": manifest}):
        remove_stale(out_dir)
        return manifest
    stamp = {"hash": digest, **settings}  # corpus.json, renamed in last (a kill leaves no half set)
    install(out_dir, lambda tmp: _speak_heldout(tmp, sentences, seed, progress, stamp),
            "corpus.json")  # fmt: skip
    return manifest


def _speak_heldout(out_dir: Path, sentences: list[str], seed: int, progress, stamp: dict) -> None:
    rng = random.Random(seed)
    utts = []
    for i, text in enumerate(sentences):
        adult_voice, child_voice = VOICES[i % len(VOICES)], VOICES[(i + 1) % len(VOICES)]
        adult = flite(text, adult_voice)
        utts.append(_save(out_dir, i, "heldout_adult", adult, text, adult_voice))
        child = flite(text, child_voice, rng.randint(*CHILD_F0), rng.uniform(*CHILD_STRETCH))
        child = childlike(child, rng.uniform(*CHILD_SEMITONES), rng.uniform(*CHILD_ALPHA), 1.0)
        utts.append(_save(out_dir, i, "heldout_child", child, text, child_voice))
        if progress is not None:
            progress(2 * (i + 1), 2 * len(sentences))
    write_manifest(out_dir / "heldout.jsonl", utts)
    (out_dir / "corpus.json").write_text(json.dumps(stamp, indent=2))


def _save(out_dir: Path, i: int, group: str, wave, text: str, voice: str):
    return _write(out_dir / "wav" / f"{group}-{i:03d}.wav", wave, text, f"{ENGINE}:{voice}", group)
