"""A result file another session is reading stays whole while the same result is written
again (``apps/web/cache_writes``): the race behind ``peer closed connection without
sending complete message body`` when two clients upload the same at-limit image at once.

Each test pauses the second writer halfway through its write (after the target was opened
for writing and half the bytes are down) and reads the published path at that moment.
Gradio's own writers truncate the published file in place, so the read comes back short.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from gradio import processing_utils as pu
from PIL import Image

from lorakit.apps.web import cache_writes


@pytest.fixture()
def writers(monkeypatch):
    """Gradio's writers as ``install`` leaves them (undone after the test)."""
    for name in ("save_pil_to_cache", "save_bytes_to_cache", "save_audio_to_cache"):
        monkeypatch.setattr(pu, name, getattr(pu, name))
    monkeypatch.setattr(pu, cache_writes._DONE, False, raising=False)
    cache_writes.install()
    return pu


class HalfwayPause:
    """Writes the first half of every file, waits for ``go``, then writes the rest."""

    def __init__(self):
        self.halfway, self.go = threading.Event(), threading.Event()

    def write(self, path, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            self.halfway.set()
            self.go.wait(10)
            f.write(data[len(data) // 2 :])


def read_during_second_write(first, second, pause: HalfwayPause) -> tuple[bytes, bytes]:
    """Publish once, start an identical second write, read the published file while the
    second write is paused halfway (or once it finished, if it never writes)."""
    path = Path(first())
    whole = path.read_bytes()
    worker = threading.Thread(target=second)
    worker.start()
    pause.halfway.wait(2)
    seen = path.read_bytes()
    pause.go.set()
    worker.join(10)
    assert not worker.is_alive()
    return whole, seen


def noisy_image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))


def test_an_image_result_stays_whole_while_written_again(writers, monkeypatch, tmp_path):
    pause = HalfwayPause()
    first_done = threading.Event()

    def write_bytes(self, data):
        if first_done.is_set():
            pause.write(self, data)
        else:
            with open(self, "wb") as f:
                f.write(data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    img, cache = noisy_image(), str(tmp_path)

    def first():
        out = writers.save_pil_to_cache(img, cache, format="png")
        first_done.set()
        return out

    whole, seen = read_during_second_write(
        first, lambda: writers.save_img_array_to_cache(np.asarray(img), cache, "png"), pause
    )
    assert len(whole) > 1000 and seen == whole
    assert [p.name for p in Path(cache).rglob("*") if p.is_file()] == ["image.png"]  # no staging


def test_two_first_writes_at_once_never_show_a_partial_file(writers, monkeypatch, tmp_path):
    """Neither writer has published yet: the path appears only when a write is complete."""
    pause = HalfwayPause()
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: pause.write(self, data))
    data = bytes(range(256)) * 64
    worker = threading.Thread(
        target=writers.save_bytes_to_cache, args=(data, "x.bin", str(tmp_path))
    )
    worker.start()
    pause.halfway.wait(5)
    final = tmp_path / pu.hash_bytes(data) / "x.bin"
    assert not final.exists(), "a half-written file is visible under its final name"
    pause.go.set()
    worker.join(10)
    assert final.read_bytes() == data
    assert sorted(p.name for p in final.parent.iterdir()) == ["x.bin"]


def test_an_audio_result_stays_whole_while_written_again(writers, monkeypatch, tmp_path):
    pause = HalfwayPause()
    real = pu.audio_to_file
    calls = []

    def audio_to_file(sample_rate, data, filename, format="wav"):
        calls.append(filename)
        real(sample_rate, data, filename, format=format)
        if len(calls) > 1:  # the second write: redo it through the pausing writer
            pause.write(filename, Path(filename).read_bytes())

    monkeypatch.setattr(pu, "audio_to_file", audio_to_file)
    wave = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    write = lambda: writers.save_audio_to_cache(wave, 16000, "wav", str(tmp_path))  # noqa: E731
    whole, seen = read_during_second_write(write, write, pause)
    assert len(whole) > 16000 and seen == whole


def test_install_is_idempotent_and_replaces_the_three_writers(writers):
    cache_writes.install()
    assert writers.save_pil_to_cache is cache_writes.save_pil_to_cache
    assert writers.save_bytes_to_cache is cache_writes.save_bytes_to_cache
    assert writers.save_audio_to_cache is cache_writes.save_audio_to_cache


def test_every_page_installs_the_atomic_writers(monkeypatch):
    """``DemoContext.finish`` (the hub and every single-app page call it) installs them."""
    import types

    import gradio as gr

    from lorakit.apps.web.common import DemoContext

    for name in ("save_pil_to_cache", "save_bytes_to_cache", "save_audio_to_cache"):
        monkeypatch.setattr(pu, name, getattr(pu, name))
    monkeypatch.setattr(pu, cache_writes._DONE, False, raising=False)
    monkeypatch.setattr(pu, "save_pil_to_cache", lambda *a, **k: None)
    with gr.Blocks() as demo:
        DemoContext.finish(types.SimpleNamespace(_loads=[]), demo)
    assert pu.save_pil_to_cache is cache_writes.save_pil_to_cache
