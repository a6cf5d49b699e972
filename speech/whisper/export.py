"""Export an adapted Whisper: merged openai-whisper ``.pt`` and a CTranslate2 folder.

merged = merged_copy(model)             # plain Whisper, adapter folded into W0
save_whisper_pt(merged, "adapted.pt")   # whisper.load_model("adapted.pt") loads it
export_ct2(merged, "adapted-ct2/", dtype="float32")  # faster_whisper.WhisperModel("adapted-ct2/")
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path

import torch
from whisper.model import Whisper

from lorakit.core import hosts, remove_adapter
from lorakit.core.io import atomic_write

from .ct2_convert import export_ct2

__all__ = ["merged_copy", "save_whisper_pt", "export_ct2", "export_run"]


def merged_copy(model: Whisper) -> Whisper:
    """A deep copy of ``model`` with every adapter merged into its base weight and the
    hosts removed: a plain openai-whisper model (the input is left untouched)."""
    out = copy.deepcopy(model)
    if hosts(out):
        remove_adapter(out, merge_first=True)
    return out.eval()


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
        if fmt == "pt":
            written["pt"] = save_whisper_pt(merged, out_dir / "whisper-merged.pt")
        elif fmt == "ct2":
            written["ct2"] = export_ct2(
                merged, out_dir / "ct2", tokenizer_dir=tokenizer_dir, dtype=ct2_dtype
            )
        else:
            raise ValueError(f"unknown export format {fmt!r}: use pt or ct2")
    return written
