"""Uploads are checked before they are decoded; non-finite audio is refused (issue 22)."""

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from lorakit.apps.web.common import LIMITS, check_audio, check_image


def test_a_decompression_bomb_png_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb, optimize=True)  # a few KB on disk
    assert bomb.stat().st_size < 100_000
    decoded = []
    real_load = Image.Image.load

    def spy(self, *a, **k):
        decoded.append(self.size)
        return real_load(self, *a, **k)

    monkeypatch.setattr(Image.Image, "load", spy)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", spy)
    with pytest.raises(ValueError, match=r"bomb.png: 12000x12000 px is too large") as e:
        check_image(str(bomb))
    assert "\n" not in str(e.value)
    assert (12000, 12000) not in decoded  # refused from the header alone


def test_a_normal_image_still_loads(tmp_path):
    p = tmp_path / "ok.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(p)
    img = check_image(str(p))
    assert img.size == (64, 48) and img.getpixel((0, 0)) == (10, 200, 30)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_audio_is_refused(tmp_path, bad):
    wav = tmp_path / "nan.wav"
    samples = (0.3 * np.sin(np.linspace(0, 200, 16000))).astype(np.float32)
    samples[100:200] = bad
    sf.write(wav, samples, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="non-finite samples") as e:
        check_audio(str(wav))
    assert "\n" not in str(e.value)


def test_too_long_audio_is_refused_from_its_header(tmp_path, monkeypatch):
    wav = tmp_path / "long.wav"
    sf.write(wav, np.zeros(int(16000 * (LIMITS.audio_seconds + 5)), np.int16), 16000)
    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("decoded before the check"))
    with pytest.raises(ValueError, match="over the limit"):
        check_audio(str(wav))


def test_long_compressed_audio_is_decoded_only_up_to_the_limit(tmp_path, monkeypatch):
    import subprocess

    ogg = tmp_path / "long.ogg"  # 10 minutes in ~0.4 MB: decoded whole it is 19 MB
    tone = (0.3 * np.sin(np.arange(8000 * 60) / 3)).astype(np.float32)
    with sf.SoundFile(ogg, "w", 8000, 1, format="OGG") as f:
        for _ in range(10):
            f.write(tone)
    decoded = []
    real_run = subprocess.run

    def spy(*a, **k):
        out = real_run(*a, **k)
        decoded.append(len(out.stdout))
        return out

    monkeypatch.setattr(subprocess, "run", spy)
    with pytest.raises(ValueError, match="longer than 30.0 s, over the limit") as e:
        check_audio(str(ogg))
    assert "\n" not in str(e.value)
    assert decoded and max(decoded) <= (LIMITS.audio_seconds + 1.5) * 16000 * 2  # s16 at 16 kHz
