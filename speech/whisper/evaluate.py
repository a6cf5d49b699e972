"""WER / CER after Whisper's text normaliser, overall and per ``group``; the per-utterance
CSV; the S2-LoRA rank-coefficient heatmap.

Scores are corpus-level (errors summed over utterances / reference words), as jiwer
computes them for a list of sentences.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import jiwer
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from whisper.model import Whisper  # noqa: E402
from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer  # noqa: E402

from lorakit.core import named_methods  # noqa: E402
from lorakit.data.manifest import Utterance  # noqa: E402
from lorakit.data.plots import save_figure

from .transcribe import DecodeConfig, decode, encode, load_mels  # noqa: E402


def normalizer(language: str = "en"):
    """Whisper's English normaliser for English, its basic one for other languages."""
    return EnglishTextNormalizer() if language == "en" else BasicTextNormalizer()


@dataclass
class Scored:
    utt: Utterance
    hypothesis: str
    ref_norm: str
    hyp_norm: str
    word_errors: int
    ref_words: int
    char_errors: int
    ref_chars: int


def score(utts: list[Utterance], hyps: list[str], language: str = "en") -> list[Scored]:
    norm = normalizer(language)
    rows = []
    for u, h in zip(utts, hyps, strict=True):
        r, n = norm(u.text), norm(h)
        if not r.strip():
            raise ValueError(f"{u.where}: reference text is empty after normalisation ({u.text!r})")
        w = jiwer.process_words(r, n if n.strip() else "")
        c = jiwer.process_characters(r, n if n.strip() else "")
        rows.append(
            Scored(
                u,
                h,
                r,
                n,
                w.substitutions + w.deletions + w.insertions,
                len(r.split()),
                c.substitutions + c.deletions + c.insertions,
                len(r),
            )
        )
    return rows


def summarize(rows: list[Scored], prefix: str = "") -> dict:
    """``{prefix}wer``, ``{prefix}cer`` overall and ``{prefix}wer_<group>`` per group."""

    def rates(sub: list[Scored]) -> tuple[float, float]:
        words, chars = sum(r.ref_words for r in sub), sum(r.ref_chars for r in sub)
        return sum(r.word_errors for r in sub) / max(words, 1), sum(
            r.char_errors for r in sub
        ) / max(chars, 1)

    wer, cer = rates(rows)
    out = {f"{prefix}wer": wer, f"{prefix}cer": cer}
    for group in sorted({r.utt.group for r in rows if r.utt.group}):
        gw, gc = rates([r for r in rows if r.utt.group == group])
        out[f"{prefix}wer_{group}"], out[f"{prefix}cer_{group}"] = gw, gc
    return out


def write_utterance_csv(rows: list[Scored], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "id",
                "group",
                "audio",
                "reference",
                "hypothesis",
                "ref_normalized",
                "hyp_normalized",
                "word_errors",
                "ref_words",
                "wer",
                "char_errors",
                "ref_chars",
                "cer",
            ]
        )
        for r in rows:
            w.writerow(
                [
                    r.utt.id,
                    r.utt.group,
                    str(r.utt.audio),
                    r.utt.text,
                    r.hypothesis,
                    r.ref_norm,
                    r.hyp_norm,
                    r.word_errors,
                    r.ref_words,
                    f"{r.word_errors / max(r.ref_words, 1):.4f}",
                    r.char_errors,
                    r.ref_chars,
                    f"{r.char_errors / max(r.ref_chars, 1):.4f}",
                ]
            )
    return path


def transcribe_utterances(
    model: Whisper,
    utts: list[Utterance],
    cfg: DecodeConfig,
    features: list | None = None,
    chunk: int = 32,
) -> list[str]:
    """Decode every utterance in chunks (bounded memory). If ``features`` is a list, the
    encoder outputs are appended to it (reuse them with ``decode_features``)."""
    hyps: list[str] = []
    for i in range(0, len(utts), chunk):
        mels = load_mels(model, [u.audio for u in utts[i : i + chunk]], cfg)
        if features is not None:
            feats = encode(model, mels, cfg.batch_size)
            features.append(feats)
            hyps += decode(model, feats, cfg)
        else:
            hyps += decode(model, mels, cfg)
    return hyps


def decode_features(model: Whisper, features: list, cfg: DecodeConfig) -> list[str]:
    return [t for feats in features for t in decode(model, feats, cfg)]


def _lambdas(model: Whisper) -> list[tuple[str, torch.Tensor]]:
    """``(short layer label, |lambda_l| (r,))`` of every S2-LoRA layer."""
    out = []
    for name, slot, m in named_methods(model):
        if hasattr(m, "lam"):
            short = name.replace("encoder.blocks.", "enc").replace("decoder.blocks.", "dec")
            out.append((short + ("" if slot == "weight" else f":{slot}"), m.lam.detach()))
    return [(label, lam.abs().float().cpu()) for label, lam in out]


def kept_ranks(model: Whisper) -> dict[str, int]:
    """Non-zero rank coefficients per S2-LoRA layer (what the proximal step left)."""
    return {label: int((lam > 0).sum()) for label, lam in _lambdas(model)}


def lambda_heatmap(model: Whisper, path: str | Path) -> Path | None:
    """Heatmap of S2-LoRA's learned ``|lambda_l|`` (rows: adapted layers with their count of
    non-zero ranks, columns: rank index; exact zeros grey); None without S2-LoRA."""
    found = _lambdas(model)
    if not found:
        return None
    rows = [lam for _, lam in found]
    labels = [f"{label} ({int((lam > 0).sum())}/{lam.numel()})" for label, lam in found]
    grid = torch.stack(rows).numpy()
    fig, ax = plt.subplots(figsize=(2.5 + 0.35 * grid.shape[1], 1 + 0.2 * len(rows)))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#bbbbbb")
    masked = np.ma.masked_equal(grid, 0.0)  # pruned ranks (exactly zero) in grey
    im = ax.imshow(masked, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xticks(range(grid.shape[1]))
    ax.set_xlabel("rank index")
    ax.set_title("S2-LoRA |lambda| per layer (grey: pruned; kept/r)")
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
