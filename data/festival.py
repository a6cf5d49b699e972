"""A second synthesis engine for training or validation speech: Festival with its ``ked``
diphone voice (Debian ``festival`` + ``festvox-kdlpc16k``; optional).

Why this voice: the held-out set is flite's ``kal16``/``awb``/``rms``/``slt``, voices built
from Festival's kal/awb/rms/slt recordings, so Festival's ``kal_diphone`` (festvox-kallpc*)
and ``us-slt-hts`` would leak held-out voices. ``ked`` (a different American male speaker)
is in neither flite nor espeak-ng; Debian's other candidates are not here (mbrola voices
and SVOX pico are non-free, outside Debian main). One voice only, so its pitch and
duration are spread the way ``lorakit.data.speech`` spreads espeak's, then child-like
versions go through the same formant / pitch / tempo transforms.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import soundfile as sf
import torch

from .audio import SAMPLE_RATE, resample

ENGINE = "festival"
VOICE = "ked_diphone"
VOICE_DIR = Path("/usr/share/festival/voices/english/ked_diphone")
MISSING = (
    "festival's ked voice is not installed (Debian: apt-get install festival festvox-kdlpc16k)"
)
# adult / child-like: intonation mean F0 (Hz), Festival duration stretch
ADULT_F0, ADULT_STRETCH = (95, 150), (0.9, 1.15)
CHILD_F0, CHILD_STRETCH = (220, 300), (0.85, 1.25)


def available() -> bool:
    return shutil.which("text2wave") is not None and VOICE_DIR.is_dir()


def festival(text: str, f0: int = 120, stretch: float = 1.0) -> torch.Tensor:
    """Speak ``text`` with Festival's ked voice, intonation mean ``f0`` Hz, durations x
    ``stretch``. ``(T,)`` at 16 kHz. Missing engine: one ``ValueError`` line."""
    if not available():
        raise ValueError(MISSING)
    with tempfile.TemporaryDirectory() as tmp:
        txt, wav = Path(tmp) / "say.txt", Path(tmp) / "say.wav"
        txt.write_text(text, encoding="utf-8")  # the text never reaches the command line
        params = f"((target_f0_mean {int(f0)}) (target_f0_std {max(10, int(f0) // 6)}) (model_f0_mean 170) (model_f0_std 34))"  # noqa: E501
        cmd = [
            "text2wave", "-o", str(wav),
            "-eval", f"(voice_{VOICE})",
            "-eval", f"(Parameter.set 'Duration_Stretch {float(stretch):.3f})",
            "-eval", f"(set! int_lr_params '{params})",
            str(txt),
        ]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True)
        if res.returncode != 0 or not wav.is_file():
            raise ValueError(f"festival failed: {res.stderr.decode(errors='replace').strip()}")
        data, sr = sf.read(wav, dtype="float32")
    wave = torch.from_numpy(data if data.ndim == 1 else data.mean(1))
    return resample(wave, sr, SAMPLE_RATE)


def speak_festival(text: str, group: str, rng: random.Random) -> torch.Tensor:
    """One adult or child-like Festival utterance (child: raised F0, then the espeak
    corpus's formant / pitch / tempo transforms). Peak 0.9."""
    from .speech import CorpusStyle, childlike

    if group == "adult":
        wave = festival(text, rng.randint(*ADULT_F0), rng.uniform(*ADULT_STRETCH))
        return childlike(wave, 0.0, 1.0, 1.0)
    style = CorpusStyle().child
    wave = festival(text, rng.randint(*CHILD_F0), rng.uniform(*CHILD_STRETCH))
    return childlike(
        wave,
        rng.uniform(0.0, 3.0),
        rng.uniform(*style.formant_alpha),
        rng.uniform(*style.tempo),
    )
