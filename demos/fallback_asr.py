"""Held-out WER of the real Whispers with and without the temperature fallback (fallback.py).

    python demos/fallback_asr.py [--models tiny.en-ct2 base-ct2] [--out demos/results/fallback_asr.json]

The project's flite held-out set (48 sentences, each by an adult voice and a child-like
voice: 96 files, voices never used for training), greedy decoding on the openai-whisper
engine, ``sample_len`` as ``lorakit transcribe`` (224, Whisper's own) and as ``eval`` (96).
Each model's encoder runs once; the decoder runs with ``fallback`` on and off. Scores are
corpus WER after Whisper's English normaliser with 95 % bootstrap intervals over sentences;
``fallback_redecoded`` counts the utterances the guard decoded again.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from lorakit.data.heldout import generate_heldout
from lorakit.data.manifest import read_manifest
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.evaluate import decode_features, score, transcribe_utterances
from lorakit.speech.whisper.fallback import compression_ratio
from lorakit.speech.whisper.transcribe import DecodeConfig
from lorakit.speech.whisper.validate import bootstrap_wer


def _wers(utts, hyps) -> dict:
    rows = score(utts, hyps)
    out = {}
    for group in ("heldout_adult", "heldout_child"):
        sub = [r for r in rows if r.utt.group == group]
        wer = sum(r.word_errors for r in sub) / sum(r.ref_words for r in sub)
        lo, hi = bootstrap_wer(sub)
        out[group] = {"wer": round(wer, 4), "ci95": [round(lo, 4), round(hi, 4)]}
    out["looping"] = sum(compression_ratio(h) > 2.4 for h in hyps)
    return out


def run(models: list[str], sample_lens: list[int], heldout_dir: Path, seed: int = 0) -> dict:
    utts = read_manifest(generate_heldout(heldout_dir, seed=seed))
    results = {
        "n_files": len(utts),
        "heldout_seed": seed,
        "engine": "openai-whisper, greedy",
        "models": {},
    }
    for name in models:
        model = load_whisper(name)
        feats: list = []
        start = time.time()
        for sample_len in sample_lens:
            per = {}
            for fallback in (False, True):
                cfg = DecodeConfig(sample_len=sample_len, fallback=fallback)
                if not feats:
                    hyps = transcribe_utterances(model, utts, cfg, features=feats)
                else:
                    hyps = decode_features(model, feats, cfg)
                per["fallback" if fallback else "plain"] = {**_wers(utts, hyps), "hyps": hyps}
            changed = sum(
                a != b for a, b in zip(per["plain"]["hyps"], per["fallback"]["hyps"], strict=True)
            )
            per["fallback"]["changed_texts"] = changed
            results["models"].setdefault(name, {})[f"sample_len_{sample_len}"] = per
        results["models"][name]["seconds"] = round(time.time() - start, 1)
        logging.info("%s done", name)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny.en-ct2", "base-ct2"])
    ap.add_argument("--sample-lens", nargs="+", type=int, default=[224, 96])
    ap.add_argument("--heldout-dir", type=Path, default=Path("cache/asr-speech/heldout"))
    ap.add_argument("--seed", type=int, default=0, help="held-out set's seed (child voices)")
    ap.add_argument("--out", type=Path, default=Path("demos/results/fallback_asr.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    res = run(args.models, args.sample_lens, args.heldout_dir, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    for name, per_len in res["models"].items():
        for key, per in per_len.items():
            if key == "seconds":
                continue
            for mode in ("plain", "fallback"):
                r = per[mode]
                print(
                    f"{name:12s} {key:15s} {mode:8s} adult {r['heldout_adult']['wer']:.3f} "
                    f"{r['heldout_adult']['ci95']}  child {r['heldout_child']['wer']:.3f} "
                    f"{r['heldout_child']['ci95']}  looping {r['looping']}"
                )


if __name__ == "__main__":
    main()
