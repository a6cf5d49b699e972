"""Real Whisper base (``base-ct2``, the whisper-base extra): the CTranslate2 export of an
adapted base model transcribes held-out files exactly as the merged openai-whisper model,
and a short run of demos/asr_base.yaml lowers validation WER (about 8 CPU-minutes on one
thread: base's 30-s encoder pass forward and backward costs several seconds per utterance).

Slow (a minute on 2 CPU cores, ~600 MB written): ``pytest -m slow tests/speech/whisper``.
"""

from __future__ import annotations

import pytest

from lorakit.core import disable, enable
from lorakit.data.manifest import read_manifest
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.export import export_run
from lorakit.speech.whisper.transcribe import DecodeConfig, decode, load_mels

pytestmark = pytest.mark.slow


def test_adapted_base_exports_to_ct2_with_identical_transcripts(heldout_manifest, tmp_path, fixed_adapter):
    pytest.importorskip("ctranslate2")
    from lorakit.speech.whisper.ct2_run import ct2_transcribe

    model = load_whisper("base-ct2")
    fixed_adapter(model, 0.05)
    utts = read_manifest(heldout_manifest)[:4]
    cfg = DecodeConfig(sample_len=48, fallback=False)  # the weights, not sampling, compared
    mels = load_mels(model, [u.audio for u in utts], cfg)
    adapted = decode(model, mels, cfg)
    disable(model)
    base = decode(model, mels, cfg)
    enable(model)
    assert adapted != base  # the adapter really changes what is transcribed
    written = export_run(model, tmp_path / "export")
    merged = load_whisper(str(written["pt"]))
    assert merged.is_multilingual
    assert decode(merged, mels, cfg) == adapted
    assert ct2_transcribe(written["ct2"], mels, merged, sample_len=48, cfg=cfg) == adapted
    assert (written["ct2"] / "tokenizer.json").is_file()  # faster-whisper loads the folder


def test_short_recipe_run_on_base_lowers_validation_wer(tmp_path, short_recipe_config):
    """demos/asr_base.yaml (tiny.en's recipe on base), cut to 20 steps of 2 utterances:
    the validation WER of the best checkpoint is below the unadapted model's."""
    from lorakit.speech.whisper import pipeline

    cfg = short_recipe_config("demos/asr_base.yaml")
    cfg["trainer"].update(max_steps=20, progress=False, checkpoint_every=100)
    cfg["optim"].update(val_every=10, batch_size=2)
    cfg["eval"].update(sets=["test"], baseline=False, sample_len=48)
    metrics = pipeline.train(cfg, tmp_path / "run")
    start = metrics["val_history"][0][1]
    assert metrics["best_val_step"] > 0 and metrics["val_wer"] < start, metrics["val_history"]
