"""Real tiny.en (embedded CTranslate2 weights): domain gap, adaptation, faster-whisper export.

Slow (minutes on 2 CPU cores): run with ``pytest -m slow tests/speech/whisper``.
"""

from __future__ import annotations

import pytest
import torch

from lorakit.core import inject, make_config, trainable_parameters
from lorakit.data.manifest import read_manifest
from lorakit.data.speech import SplitSpec, generate_corpus
from lorakit.speech.whisper.build import embedded_model_dir, load_whisper
from lorakit.speech.whisper.evaluate import score, summarize, transcribe_utterances
from lorakit.speech.whisper.export import export_run
from lorakit.speech.whisper.transcribe import DecodeConfig, decode, load_mels

pytestmark = pytest.mark.slow
DECODER_ATTN = r"decoder\.blocks\.\d+\.(attn|cross_attn)\.(query|key|value|out)"


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory):
    return generate_corpus(
        tmp_path_factory.mktemp("real"), {"test": SplitSpec(8, ("adult", "child"))}, seed=5
    )


def test_child_like_speech_is_harder_than_adult(real_corpus):
    model = load_whisper()
    utts = read_manifest(real_corpus["test"])
    metrics = summarize(
        score(utts, transcribe_utterances(model, utts, DecodeConfig(sample_len=48)))
    )
    assert metrics["wer_child"] > metrics["wer_adult"] + 0.1


def test_exported_ct2_transcribes_like_merged_model(real_corpus, tmp_path):
    fw = pytest.importorskip("faster_whisper")
    model = load_whisper()
    inject(model, make_config("s2_lora", r=4, alpha=8, targets=(DECODER_ATTN,)))
    with torch.no_grad():
        for p in trainable_parameters(model):
            p.add_(1e-3 * torch.randn_like(p))
    written = export_run(model, tmp_path / "export")
    merged = load_whisper(str(written["pt"]))
    adult = [u for u in read_manifest(real_corpus["test"]) if u.group == "adult"][:3]
    cfg = DecodeConfig(sample_len=48)
    ours = decode(merged, load_mels(merged, [u.audio for u in adult], cfg), cfg)
    assert ours == decode(model, load_mels(model, [u.audio for u in adult], cfg), cfg)
    engine = fw.WhisperModel(str(written["ct2"]), device="cpu", compute_type="float32")
    theirs = []
    for u in adult:
        segments, _ = engine.transcribe(
            str(u.audio),
            beam_size=1,
            temperature=0,
            without_timestamps=True,
            condition_on_previous_text=False,
        )
        theirs.append("".join(s.text for s in segments).strip())
    # float16 storage and faster-whisper's own features: compare normalised words
    agree = (
        summarize(score([u for u in adult], theirs))["wer"] - summarize(score(adult, ours))["wer"]
    )
    assert abs(agree) < 0.15
    assert (written["ct2"] / "model.bin").stat().st_size > 0.9 * (
        embedded_model_dir() / "model.bin"
    ).stat().st_size
