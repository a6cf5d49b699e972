"""Benchmark: S2-LoRA vs LoRA adapting real Whisper tiny.en to child-like speech.

    .venv/bin/python demos/bench_asr.py --out runs/bench_asr [--steps 40] [--targets decoder]

One run: WER adult / child-like before adaptation, then for each method after the same
number of training steps: WER on held-out child-like and adult sentences (forgetting),
trainable parameters, seconds per step. Prints a table, writes bench_asr.json and
bench_asr.png into --out (each method's full run folder sits beside them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lorakit.data.runs import load_config  # noqa: E402
from lorakit.speech.whisper import pipeline  # noqa: E402

TARGETS = {
    "decoder": r"decoder\.blocks\.\d+\.(attn|cross_attn)\.(query|key|value|out)",
    "all": "whisper-attn",
}
METHODS = {
    "s2_lora": {"method": "s2_lora", "r": 8, "alpha": 16, "beta": 1e-4, "prox_threshold": 0.0},
    "lora": {"method": "lora", "r": 8, "alpha": 16},
}


def run_method(name: str, args, out: Path, baseline: bool) -> dict:
    cfg = load_config(Path(__file__).with_name("asr.yaml"), [], pipeline.DEFAULTS)
    cfg["adapter"] = {**METHODS[name], "targets": [TARGETS[args.targets]]}
    cfg["trainer"].update(max_steps=args.steps, progress=False, resume=False)
    cfg["data"]["generate"].update(
        train_sentences=args.train_sentences, test_sentences=args.test_sentences
    )
    cfg["eval"]["baseline"] = baseline
    return pipeline.train(cfg, out / name)


def plot(rows: dict, base: dict, path: Path) -> None:
    labels = ["before", *rows]
    child = [base["baseline_wer_child"], *(r["wer_child"] for r in rows.values())]
    adult = [base["baseline_wer_adult"], *(r["wer_adult"] for r in rows.values())]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.5))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], child, 0.4, label="child-like")
    ax.bar([x + 0.2 for x in xs], adult, 0.4, label="adult")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("WER")
    ax.legend()
    ax.set_title("held-out WER")
    bx.bar(list(rows), [r["trainable_parameters"] for r in rows.values()], color="#55A868")
    bx.set_yscale("log")
    bx.set_ylabel("trainable parameters")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_asr"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--targets", choices=list(TARGETS), default="decoder")
    ap.add_argument("--train-sentences", type=int, default=16)
    ap.add_argument("--test-sentences", type=int, default=6)
    args = ap.parse_args()
    rows = {}
    for i, name in enumerate(METHODS):
        rows[name] = run_method(name, args, args.out, baseline=i == 0)
    base = rows[next(iter(METHODS))]
    header = f"{'method':<10}{'params':>10}{'s/step':>8}{'WER child':>11}{'WER adult':>11}"
    lines = [
        header,
        f"{'before':<10}{0:>10}{'-':>8}{base['baseline_wer_child']:>11.3f}{base['baseline_wer_adult']:>11.3f}",
    ]
    for name, r in rows.items():
        lines.append(
            f"{name:<10}{r['trainable_parameters']:>10,}{r['seconds_per_step']:>8.2f}"
            f"{r['wer_child']:>11.3f}{r['wer_adult']:>11.3f}"
        )
    print("\n".join(lines))
    result = {
        "steps": args.steps,
        "targets": TARGETS[args.targets],
        "before": {k: base[k] for k in ("baseline_wer_child", "baseline_wer_adult")},
        "methods": {
            n: {
                k: r[k]
                for k in (
                    "trainable_parameters",
                    "seconds_per_step",
                    "wer_child",
                    "wer_adult",
                    "cer_child",
                    "cer_adult",
                )
            }
            for n, r in rows.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_asr.json").write_text(json.dumps(result, indent=2))
    plot(rows, base, args.out / "bench_asr.png")
    print(f"wrote {args.out / 'bench_asr.json'} and {args.out / 'bench_asr.png'}")


if __name__ == "__main__":
    main()
