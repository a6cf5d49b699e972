"""The Whisper tab's "Speak it" text never reaches espeak-ng as an option (issue 22)."""

import subprocess

from lorakit.apps.web.asr import synthesize
from lorakit.data.speech import SAMPLE_RATE


def test_option_like_text_does_not_read_a_server_file(tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("this line is a secret that must never be read aloud by the server\n" * 40)
    text = f"-f{secret}"
    seen = []
    real_run = subprocess.run

    def spy(args, *a, **k):
        seen.append(list(args))
        return real_run(args, *a, **k)

    monkeypatch.setattr(subprocess, "run", spy)
    wave = synthesize(text, 0)  # the function the app's "Speak it" button calls
    assert seen and all(text not in args for args in seen)  # text on stdin, never argv
    # Reading the 40-line file takes over 2 minutes of audio; the literal text a few seconds.
    assert wave.numel() / SAMPLE_RATE < 30.0
