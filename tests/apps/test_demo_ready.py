"""``lorakit demo`` from an empty cache: every tab's pre-made run is ready within 60 s of the
page answering, without training (the runs ship with lorakit), and the terminal shows one
line per run with the hub's URL last.

Run: .venv/bin/python -m pytest tests/apps/test_demo_ready.py -m browser -q
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import free_port

pytestmark = pytest.mark.browser  # a served hub, as the browser group's (no Chromium needed)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_the_hub_is_ready_within_a_minute_of_answering_from_an_empty_cache(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HOME": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("LORAKIT_RUNS", None)
    lorakit = Path(sys.executable).with_name("lorakit")
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(lorakit), "demo", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        t0, answered, ready = time.monotonic(), None, None
        while time.monotonic() - t0 < 300 and proc.poll() is None:
            if answered is None and answers(url):
                answered = time.monotonic()
            if "The hub is ready at" in log.read_text():
                ready = time.monotonic()
                break
            time.sleep(0.5)
        text = log.read_text()
        assert answered is not None and ready is not None, text[-3000:]
        print(
            f"page answered {answered - t0:.1f} s after start, every run ready {ready - t0:.1f} s"
        )
        assert ready - answered < 60, text[-3000:]
    finally:
        proc.terminate()
        proc.wait(30)
    lines = [line for line in text.splitlines() if "pre-made run" in line]
    assert "building" not in text, text[-3000:]  # nothing trained
    keys = ("clip-block_lora", "cod-fora", "ood-lora", "ood-largo", "asr-s2_lora")
    assert [k for k in keys for line in lines if f"run {k}: ready shipped" in line] == list(keys)
    assert text.strip().splitlines()[-1].endswith(f"The hub is ready at {url}")
    assert (tmp_path / ".cache" / "lorakit" / "runs" / "asr-s2_lora" / "adapter").is_dir()
