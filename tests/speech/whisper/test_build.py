"""Model loading: named models fail fast offline, local files and tiny configs load."""

from __future__ import annotations

import time

import pytest
import torch

from lorakit.speech.whisper.build import load_whisper, tiny_whisper
from lorakit.speech.whisper.export import save_whisper_pt


def test_named_model_missing_from_cache_fails_fast(tmp_path):
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"base\.en\.pt") as err:
        load_whisper("base.en", download_root=str(tmp_path))
    assert "openaipublic" in str(err.value)
    assert time.monotonic() - start < 5


def test_unknown_name_and_missing_pt():
    with pytest.raises(ValueError, match="unknown Whisper model"):
        load_whisper("no-such-model")
    with pytest.raises(ValueError, match="does not exist"):
        load_whisper("/nonexistent/model.pt")


def test_tiny_config_is_finite_and_pt_round_trip(tmp_path):
    model = tiny_whisper()
    assert torch.isfinite(model.decoder.positional_embedding).all()
    path = save_whisper_pt(model, tmp_path / "m.pt")
    back = load_whisper(str(path))
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_bad_pt_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_whisper(str(bad))
