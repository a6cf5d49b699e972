"""``lorakit transcribe`` against openai-whisper's own ``transcribe`` on the held-out set.

    python demos/transcribe_asr.py [--model base-ct2] [--seeds 0 1] \
        [--out demos/results/transcribe_asr.json]

The same weights (``load_whisper(--model)``, an openai-whisper ``Whisper``) decode the
project's flite held-out set (48 sentences, each by an adult and a child-like voice;
``--seeds`` picks the child-like voices' random settings, one set of 96 files per seed)
three ways, greedy at temperature 0 first:

- ``openai_whisper``: ``whisper.transcribe(model, audio, language="en", best_of=5)``, its
  defaults otherwise (timestamps, temperature fallback on compression ratio > 2.4 or mean
  log-probability < -1, no-speech check, conditioning on previous text);
- ``lorakit``: what ``lorakit transcribe --model M --json`` runs (224 tokens, fallback on);
- ``lorakit_no_fallback``: ``lorakit transcribe --no-fallback`` (plain greedy).

Scores: corpus WER per group after Whisper's English normaliser, 95 % bootstrap intervals
over sentences, ``looping`` = transcripts whose gzip compression ratio exceeds 2.4 (the
"hands-to-hands-to-..." case), and seconds per mode.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import whisper

from lorakit.data.audio import load_audio
from lorakit.data.heldout import generate_heldout
from lorakit.data.manifest import read_manifest
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.evaluate import score
from lorakit.speech.whisper.fallback import compression_ratio
from lorakit.speech.whisper.transcribe import DecodeConfig, decode, encode, load_mels
from lorakit.speech.whisper.validate import bootstrap_wer

GROUPS = ("heldout_adult", "heldout_child")
MODES = ("openai_whisper", "lorakit", "lorakit_no_fallback")


def group_scores(utts, hyps) -> dict:
    """``{group: {wer, ci95}}`` plus ``looping`` (compression ratio > 2.4) for ``hyps``."""
    rows = score(utts, hyps)
    out: dict = {}
    for group in GROUPS:
        sub = [r for r in rows if r.utt.group == group]
        wer = sum(r.word_errors for r in sub) / sum(r.ref_words for r in sub)
        lo, hi = bootstrap_wer(sub)
        out[group] = {"wer": round(wer, 4), "ci95": [round(lo, 4), round(hi, 4)]}
    out["looping"] = [i for i, h in enumerate(hyps) if compression_ratio(h) > 2.4]
    return out


def openai_transcribe(model, utts) -> list[str]:
    """openai-whisper's own long-form ``transcribe`` (its defaults, English, best_of 5)."""
    texts = []
    for u in utts:
        audio = load_audio(u.audio).numpy()
        res = whisper.transcribe(model, audio, language="en", best_of=5, fp16=False, verbose=None)
        texts.append(res["text"].strip())
    return texts


def lorakit_transcribe(model, utts) -> dict[str, list[str]]:
    """The ``lorakit transcribe`` decoding (sample_len None = 224), fallback on and off;
    the encoder runs once for both."""
    cfgs = {
        "lorakit": DecodeConfig(sample_len=None, fallback=True),
        "lorakit_no_fallback": DecodeConfig(sample_len=None, fallback=False),
    }
    feats = encode(model, load_mels(model, [u.audio for u in utts], cfgs["lorakit"]))
    return {name: decode(model, feats, cfg) for name, cfg in cfgs.items()}


def paired(utts, files: int = 0):
    """Utterances reordered sentence by sentence (adult, then child-like, of each text), so
    that any prefix holds both voices of the same sentences; the first ``files`` (0: all)."""
    by_text: dict[str, list] = {}
    for u in utts:
        by_text.setdefault(u.text, []).append(u)
    order = [u for text in by_text for u in sorted(by_text[text], key=lambda v: v.group)]
    return order[:files] if files else order


def summary(utts, hyps: dict[str, list[str]], seconds: dict) -> dict:
    """Scores of the first ``len(hyps['lorakit'])`` of ``utts`` for every decoder."""
    done = utts[: len(hyps["lorakit"])]
    per = {m: group_scores(done, hyps[m]) for m in MODES}
    loops = sorted({i for m in MODES for i in per[m]["looping"]})
    return {
        "n_files": len(done),
        "scores": per,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "identical_lorakit_vs_openai": sum(
            a == b for a, b in zip(hyps["lorakit"], hyps["openai_whisper"], strict=True)
        ),
        "loop_cases": [
            {"audio": str(done[i].audio), "ref": done[i].text, **{m: hyps[m][i] for m in MODES}}
            for i in loops
        ],
        "hyps": hyps,
    }


def run(model_name, seeds, heldout_root: Path, files: int = 0, chunk: int = 8, save=None) -> dict:
    """Decode ``chunk`` files at a time with every decoder; after each chunk the scores so
    far are stored in the result and ``save(result)`` is called (partial results survive)."""
    model = load_whisper(model_name)
    result: dict = {"model": model_name, "sets": {}}
    for seed in seeds:
        utts = paired(
            read_manifest(generate_heldout(heldout_root / f"seed{seed}", seed=seed)), files
        )
        hyps: dict[str, list[str]] = {m: [] for m in MODES}
        seconds = {"lorakit (both modes)": 0.0, "openai_whisper": 0.0}
        for i in range(0, len(utts), chunk):
            part = utts[i : i + chunk]
            start = time.time()
            for mode, texts in lorakit_transcribe(model, part).items():
                hyps[mode] += texts
            seconds["lorakit (both modes)"] += time.time() - start
            start = time.time()
            hyps["openai_whisper"] += openai_transcribe(model, part)
            seconds["openai_whisper"] += time.time() - start
            result["sets"][f"seed{seed}"] = summary(utts, hyps, seconds)
            if save:
                save(result)
    return result


def table(res: dict) -> str:
    lines = [
        f"Held-out set, Whisper {res['model']} (same weights, three decoders):",
        "",
        "| held-out set | decoder | child WER [95 % CI] | adult WER [95 % CI] | looping |",
        "|---|---|---|---|---|",
    ]
    for name, s in res["sets"].items():
        for m in MODES:
            sc = s["scores"][m]
            cells = [
                f"{100 * sc[g]['wer']:.1f} % [{100 * sc[g]['ci95'][0]:.1f}, "
                f"{100 * sc[g]['ci95'][1]:.1f}]"
                for g in ("heldout_child", "heldout_adult")
            ]
            lines.append(
                f"| {name} ({s['n_files']} files) | {m} | {' | '.join(cells)} | "
                f"{len(sc['looping'])} |"
            )
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    """Grouped bars: held-out child / adult WER (95 % CI) of each decoder, per held-out set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(res["sets"].items())
    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 3.8), squeeze=False)
    for ax, (name, s) in zip(axes[0], sets, strict=True):
        for j, (group, label) in enumerate(
            (("heldout_child", "child-like"), ("heldout_adult", "adult"))
        ):
            sc = [s["scores"][m][group] for m in MODES]
            vals = [100 * c["wer"] for c in sc]
            err = [
                [v - 100 * c["ci95"][0] for v, c in zip(vals, sc, strict=True)],
                [100 * c["ci95"][1] - v for v, c in zip(vals, sc, strict=True)],
            ]
            xs = [x + 0.38 * j - 0.19 for x in range(len(MODES))]
            bars = ax.bar(xs, vals, 0.38, yerr=err, capsize=3, label=label)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        ax.set_xticks(
            range(len(MODES)),
            ["openai-whisper\ntranscribe", "lorakit\ntranscribe", "lorakit\n--no-fallback"],
        )
        ax.set_xlabel("decoder (same weights, greedy first)")
        ax.set_ylabel("held-out WER, % (95 % CI over sentences)")
        ax.set_title(
            f"Whisper {res['model']}, flite held-out {name}: {s['n_files']} files "
            f"({s['n_files'] // 2} sentences x adult, child-like voice)",
            fontsize=10,
        )
        ax.legend(title="voice")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="base-ct2")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--heldout-root", type=Path, default=Path("cache/asr-heldout-seeds"))
    ap.add_argument("--files", type=int, default=0, help="first N, sentence by sentence (0: all)")
    ap.add_argument(
        "--chunk", type=int, default=8, help="files per step (results saved after each)"
    )
    ap.add_argument("--out", type=Path, default=Path("demos/results/transcribe_asr.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(res: dict) -> None:
        args.out.write_text(json.dumps(res, indent=1))
        args.out.with_suffix(".md").write_text(table(res) + "\n")
        plot(res, args.out.with_suffix(".png"))
        print(table(res).splitlines()[-3:], flush=True)

    save(run(args.model, args.seeds, args.heldout_root, args.files, args.chunk, save))


if __name__ == "__main__":
    main()
