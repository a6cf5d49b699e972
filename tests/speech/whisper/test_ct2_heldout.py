"""The CTranslate2 export of an adapted real tiny.en transcribes held-out files exactly as
the merged openai-whisper model does (greedy, float32), with an adapter that changes text."""

from __future__ import annotations

import pytest
import torch

from lorakit.core import disable, enable, trainable_parameters
from lorakit.data.manifest import read_manifest
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.ct2_run import ct2_transcribe
from lorakit.speech.whisper.export import export_run
from lorakit.speech.whisper.transcribe import DecodeConfig, decode, load_mels


def test_ct2_export_transcribes_heldout_like_merged_model(heldout_manifest, tmp_path, fixed_adapter):
    pytest.importorskip("ctranslate2")
    model = load_whisper()
    torch.manual_seed(0)
    fixed_adapter(model, 0.03)
    assert trainable_parameters(model)
    utts = read_manifest(heldout_manifest)[:4]
    cfg = DecodeConfig(sample_len=48)
    mels = load_mels(model, [u.audio for u in utts], cfg)
    adapted = decode(model, mels, cfg)
    disable(model)
    base = decode(model, mels, cfg)
    enable(model)
    assert adapted != base  # the adapter really changes what is transcribed
    written = export_run(model, tmp_path / "export")
    merged = load_whisper(str(written["pt"]))
    assert decode(merged, mels, cfg) == adapted
    assert ct2_transcribe(written["ct2"], mels, merged, sample_len=48) == adapted
