"""Run an exported CTranslate2 Whisper folder on the same log-mels the openai-whisper model
sees, greedy with the same temperature fallback (fallback.py), so the two can be compared
text for text and timed side by side.

    texts = ct2_transcribe("runs/asr/export/ct2", mels, sample_len=96)
    report = compare_ct2(merged_model, "runs/asr/export/ct2", audio_paths)

``ctranslate2`` (faster-whisper's engine) is an optional dependency: a clear error names it.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch
from torch import Tensor
from whisper.model import Whisper

from .fallback import Attempt, decode_with_fallback
from .features import whisper_tokenizer
from .transcribe import DecodeConfig, decode, load_mels


def _ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise ValueError(
            "CTranslate2 runs need the ctranslate2 package (pip install ctranslate2)"
        ) from None
    return ctranslate2


def load_ct2(ct2_dir: str | Path, threads: int = 1, compute_type: str = "float32"):
    """A ``ctranslate2.models.Whisper`` on the CPU for the folder."""
    ct2 = _ctranslate2()
    if not (Path(ct2_dir) / "model.bin").is_file():
        raise ValueError(f"{ct2_dir} is not a CTranslate2 folder (no model.bin)")
    return ct2.models.Whisper(
        str(ct2_dir), device="cpu", compute_type=compute_type, intra_threads=threads
    )


def ct2_transcribe(
    ct2_dir,
    mels: Tensor,
    model: Whisper,
    sample_len: int = 96,
    batch_size: int = 8,
    threads: int = 1,
    compute_type: str = "float32",
    cfg: DecodeConfig | None = None,
) -> list[str]:
    """Texts for ``mels (N, n_mels, frames)`` from the CTranslate2 folder (or a loaded
    engine): greedy, then ``cfg``'s temperature fallback (default on, as ``decode``);
    ``model`` only supplies the tokenizer (prompt ``<|startoftranscript|><|en|>...``)."""
    cfg = cfg or DecodeConfig()
    engine = (
        load_ct2(ct2_dir, threads, compute_type) if isinstance(ct2_dir, str | Path) else ct2_dir
    )
    tok = whisper_tokenizer(model, cfg.language)
    run_at = _runner(engine, tok, sample_len, cfg)
    texts: list[str] = []
    for i in range(0, len(mels), batch_size):
        chunk = mels[i : i + batch_size].contiguous().numpy()
        texts += decode_with_fallback(functools.partial(run_at, chunk), len(chunk), cfg.rule())
    return texts


def _runner(engine, tok, sample_len: int, cfg: DecodeConfig):
    """``run_at(chunk, rows, T)``: ``engine.generate`` on those rows, greedy at ``T = 0``,
    else ``best_of`` samples of the full distribution at ``T`` (seeded), the best kept.
    ``avg_logprob`` as Whisper's: the sum of token log-probabilities (EOT included)
    ``/ (len + 1)``; CTranslate2's score is that sum over ``len`` (length penalty 1)."""
    ct2 = _ctranslate2()
    prompt = list(tok.sot_sequence_including_notimestamps)

    def run_at(chunk, rows: list[int], temperature: float) -> list[Attempt]:
        sampled = {}
        if temperature > 0:
            ct2.set_random_seed(cfg.seed + round(100 * temperature))
            sampled = dict(
                sampling_topk=0, sampling_temperature=temperature, num_hypotheses=cfg.best_of
            )
        results = engine.generate(
            ct2.StorageView.from_array(chunk[rows]),
            [prompt] * len(rows),
            beam_size=1,
            max_length=sample_len,
            return_scores=True,
            **sampled,
        )
        out = []
        for r in results:
            best = max(range(len(r.scores)), key=lambda h: r.scores[h])  # sum log p / len
            n = len(r.sequences_ids[best])
            ids = [t for t in r.sequences_ids[best] if t < tok.eot]
            logprob = r.scores[best] * max(n, 1) / (n + 1)
            out.append(Attempt(tok.decode(ids).strip(), logprob, temperature))
        return out

    return run_at


def compare_ct2(
    merged: Whisper,
    ct2_dir: str | Path,
    paths: list,
    cfg: DecodeConfig | None = None,
    compute_type: str = "float32",
    mels: Tensor | None = None,
) -> dict:
    """Transcribe ``paths`` with the merged openai-whisper model and with the CTranslate2
    export (same mels, greedy, ``cfg.batch_size`` utterances per call, the same number of
    threads), timed side by side. Returns both text lists, ``identical`` (count), ``n``,
    seconds and ``speedup`` (openai-whisper / ct2). ``compute_type`` other than float32
    (e.g. ``int8_float32``) trades identical text for speed. ``mels`` skips loading."""
    cfg = cfg or DecodeConfig()
    mels = load_mels(merged, paths, cfg) if mels is None else mels
    sample_len = cfg.options(merged).sample_len
    threads = torch.get_num_threads()
    engine = load_ct2(ct2_dir, threads, compute_type)  # loading is not timed (nor torch's)
    decode(merged, mels[:1], cfg)  # warm-up of both, untimed
    ct2_transcribe(engine, mels[:1], merged, sample_len, 1, threads, cfg=cfg)
    start = time.perf_counter()
    ours = decode(merged, mels, cfg)
    t_torch = time.perf_counter() - start
    start = time.perf_counter()
    theirs = ct2_transcribe(engine, mels, merged, sample_len, cfg.batch_size, threads, cfg=cfg)
    t_ct2 = time.perf_counter() - start
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    return {
        "openai_whisper": ours,
        "ctranslate2": theirs,
        "identical": same,
        "n": len(ours),
        "compute_type": compute_type,
        "batch_size": cfg.batch_size,
        "seconds_openai_whisper": round(t_torch, 2),
        "seconds_ctranslate2": round(t_ct2, 2),
        "speedup": round(t_torch / max(t_ct2, 1e-9), 2),
        "threads": threads,
    }
