"""CTranslate2 model.bin reading/writing and the Whisper importer/exporter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lorakit.speech.whisper.build import embedded_model_dir, load_whisper, tiny_whisper
from lorakit.speech.whisper.ct2_convert import export_ct2, import_ct2
from lorakit.speech.whisper.ct2_format import CT2Model, read_ct2, write_ct2


def test_format_round_trip_all_dtypes(tmp_path):
    ct = CT2Model("WhisperSpec", 3)
    ct.variables["a/weight"] = np.arange(6, dtype=np.float16).reshape(2, 3)
    ct.variables["a/num"] = np.array(7, dtype=np.int16)
    ct.variables["q/weight"] = np.array([[10, -20], [30, 40]], dtype=np.int8)
    ct.variables["q/weight_scale"] = np.array([10.0, 20.0], dtype=np.float32)
    ct.aliases["b/weight"] = "a/weight"
    back = read_ct2(write_ct2(tmp_path / "model.bin", ct))
    assert back.spec == "WhisperSpec" and back.revision == 3
    assert back.scalar("a/num") == 7
    np.testing.assert_array_equal(back.get("b/weight"), ct.variables["a/weight"])
    assert torch.allclose(back.tensor("q/weight"), torch.tensor([[1.0, -2.0], [1.5, 2.0]]))


def test_truncated_file_names_path(tmp_path):
    ct = CT2Model("WhisperSpec", 3, {"w": np.ones((4, 4), np.float32)})
    data = write_ct2(tmp_path / "model.bin", ct).read_bytes()
    (tmp_path / "model.bin").write_bytes(data[:40])
    with pytest.raises(ValueError, match="model.bin"):
        read_ct2(tmp_path)


def test_export_import_round_trip_tiny(tmp_path):
    model = tiny_whisper()
    out = export_ct2(model, tmp_path / "ct2", dtype="float32")
    back = import_ct2(out)
    assert back.dims == model.dims
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert (out / "tokenizer.json").is_file() and (out / "config.json").is_file()


def test_import_splits_fused_qkv_and_key_has_no_bias():
    ct = read_ct2(embedded_model_dir())
    model = import_ct2(embedded_model_dir())
    fused = ct.tensor("encoder/layer_1/self_attention/linear_0/weight")
    d = model.dims.n_audio_state
    assert torch.equal(model.encoder.blocks[1].attn.key.weight, fused[d : 2 * d])
    assert model.encoder.blocks[1].attn.key.bias is None
    assert model.encoder.blocks[0].attn.query.weight.dtype == torch.float32
    assert ct.get("encoder/layer_0/self_attention/linear_0/weight").dtype == np.float16


def test_encoder_matches_ctranslate2(corpus):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from lorakit.data.manifest import read_manifest
    from lorakit.speech.whisper.transcribe import DecodeConfig, load_mels

    model = load_whisper()
    utt = read_manifest(corpus["test"])[0]
    mel = load_mels(model, [utt.audio], DecodeConfig())
    ref = ctranslate2.models.Whisper(
        str(embedded_model_dir()), device="cpu", compute_type="float32"
    )
    theirs = np.array(ref.encode(ctranslate2.StorageView.from_array(mel.numpy())))
    with torch.no_grad():
        ours = model.encoder(mel).numpy()
    assert np.abs(ours - theirs).max() < 1e-3
    assert np.abs(ours - theirs).mean() < 1e-4


def test_greedy_transcript_equals_faster_whisper(corpus):
    fw = pytest.importorskip("faster_whisper")
    import whisper

    from lorakit.data.audio import load_audio
    from lorakit.data.manifest import read_manifest
    from lorakit.speech.whisper.transcribe import DecodeConfig, decode

    model = load_whisper()
    ref = fw.WhisperModel(str(embedded_model_dir()), device="cpu", compute_type="float32")
    utt = [u for u in read_manifest(corpus["test"]) if u.group == "adult"][0]
    audio = load_audio(utt.audio).numpy()
    segments, _ = ref.transcribe(
        audio, beam_size=1, temperature=0, without_timestamps=True, condition_on_previous_text=False
    )
    theirs = "".join(s.text for s in segments).strip()
    # the same log-mel features faster-whisper computed, decoded by the imported model
    mel = whisper.pad_or_trim(torch.from_numpy(ref.feature_extractor(audio)), 3000)[None]
    ours = decode(model, mel, DecodeConfig(sample_len=None))[0]
    assert theirs and ours == theirs
