"""Real tiny.en (embedded CTranslate2 weights): domain gap, and a short run of the default
recipe that lowers validation WER.

Slow (minutes on 2 CPU cores): run with ``pytest -m slow tests/speech/whisper``.
"""

from __future__ import annotations

import pytest

from lorakit.data.manifest import read_manifest
from lorakit.data.speech import SplitSpec, generate_corpus
from lorakit.speech.whisper import pipeline
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.evaluate import score, summarize, transcribe_utterances
from lorakit.speech.whisper.transcribe import DecodeConfig

pytestmark = pytest.mark.slow


def test_child_like_speech_is_harder_than_adult(tmp_path):
    manifest = generate_corpus(tmp_path, {"test": SplitSpec(8, ("adult", "child"))}, seed=5)
    model = load_whisper()
    utts = read_manifest(manifest["test"])
    metrics = summarize(
        score(utts, transcribe_utterances(model, utts, DecodeConfig(sample_len=48)))
    )
    assert metrics["wer_child"] > metrics["wer_adult"] + 0.1


def test_short_default_recipe_run_lowers_validation_wer(tmp_path, short_recipe_config):
    cfg = short_recipe_config(None)
    cfg["trainer"].update(max_steps=30, progress=False)
    cfg["optim"].update(val_every=10)
    # plain greedy for the validation WER (the recipe's selection signal): the temperature
    # fallback is tested in test_fallback.py and only doubled this test's time
    cfg["eval"].update(sets=["test"], baseline=False, sample_len=48, fallback=False)
    metrics = pipeline.train(cfg, tmp_path / "run")
    start = metrics["val_history"][0][1]
    assert metrics["best_val_step"] > 0 and metrics["val_wer"] < start
