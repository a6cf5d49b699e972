"""Export an adapted Whisper: merged openai-whisper ``.pt`` and a CTranslate2 folder.

merged = merged_copy(model)             # plain Whisper, adapter folded into W0
save_whisper_pt(merged, "adapted.pt")   # whisper.load_model("adapted.pt") loads it
export_ct2(merged, "adapted-ct2/", dtype="float32")  # faster_whisper.WhisperModel("adapted-ct2/")

On a quantized base (``backbone.quantize``) ``merged_copy`` gives a float32 Whisper holding
``W_hat + dW`` exactly; the ``quantized`` format instead re-quantizes ``W_hat + dW`` into
the base's bits (``whisper-merged-quantized.safetensors``, loaded with
``lorakit.core.quant.load_quantized(load_whisper(name), path)``) and writes the relative
error each layer's merge added to ``quantized_merge_error.json``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import torch
from whisper.model import Whisper

from lorakit.core import hosts, remove_adapter
from lorakit.core.io import atomic_write
from lorakit.core.quant import dequantize, merged_quantized_copy, quant_layers, save_quantized

from .ct2_convert import export_ct2

__all__ = ["merged_copy", "save_whisper_pt", "export_ct2", "export_run"]


def merged_copy(model: Whisper) -> Whisper:
    """A deep copy of ``model`` with every adapter merged into its base weight and the
    hosts removed: a plain openai-whisper model (the input is left untouched); quantized
    layers become float32 Linears holding ``W_hat + dW``."""
    out = copy.deepcopy(model)
    if hosts(out):
        remove_adapter(out, merge_first=True)
    return dequantize(out).eval()


def export_quantized(model: Whisper, out_dir: Path) -> Path:
    """The adapter merged into the quantized base by re-quantization (see the module doc);
    returns the safetensors path, the per-layer errors written beside it."""
    if not quant_layers(model):
        raise ValueError("export format 'quantized' needs a quantized base (backbone.quantize.bits)")
    merged, errors = merged_quantized_copy(model)
    path = save_quantized(merged, Path(out_dir) / "whisper-merged-quantized.safetensors")
    text = json.dumps({"relative_error": errors, "max": max(errors.values(), default=0.0)},
                      indent=2)
    (Path(out_dir) / "quantized_merge_error.json").write_text(text + "\n")
    return path


def save_whisper_pt(model: Whisper, path: str | Path) -> Path:
    """openai-whisper checkpoint format: ``{"dims": ..., "model_state_dict": ...}``."""
    if hosts(model):
        raise ValueError(
            "save_whisper_pt needs a plain Whisper model: call merged_copy(model) first"
        )
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    ckpt = {
        "dims": asdict(model.dims),
        "model_state_dict": state,
        "alignment_heads": model.alignment_heads.to_dense().cpu(),
    }
    path = Path(path)
    atomic_write(path, lambda p: torch.save(ckpt, p))
    return path


def export_run(
    model: Whisper,
    out_dir: str | Path,
    formats: tuple[str, ...] = ("pt", "ct2"),
    tokenizer_dir: str | Path | None = None,
    ct2_dtype: str = "float32",
) -> dict[str, Path]:
    """Merge ``model``'s adapter and write the requested formats into ``out_dir``. The
    CTranslate2 folder stores float32 by default, so greedy decoding gives the merged
    model's text exactly (``"float16"`` halves the size)."""
    merged = merged_copy(model)
    out_dir = Path(out_dir)
    written: dict[str, Path] = {}
    for fmt in formats:
        if fmt == "quantized":
            written["quantized"] = export_quantized(model, out_dir)
        elif fmt == "pt":
            written["pt"] = save_whisper_pt(merged, out_dir / "whisper-merged.pt")
        elif fmt == "ct2":
            written["ct2"] = export_ct2(
                merged, out_dir / "ct2", tokenizer_dir=tokenizer_dir, dtype=ct2_dtype
            )
        else:
            raise ValueError(f"unknown export format {fmt!r}: use pt, ct2 or quantized")
    return written
