"""Benchmark: weakly supervised COD on generated camouflage with the tiny SAM.

SAM zero-shot, LoRA and FoRA on the same layers with the same prompts, and FoRA with
each FCL-COD component switched off; S-measure, MAE and training step time.

    .venv/bin/python demos/bench_cod.py --out runs/bench_cod [--steps 100]

Writes <out>/bench_cod.json, <out>/bench_cod.png and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from lorakit.data.runs import load_config  # noqa: E402
from lorakit.vision.sam import pipeline  # noqa: E402

VARIANTS = {
    "sam_zero_shot": ["adapter.method=none"],
    "lora": ["adapter.method=lora"],
    "fora": [],
    "fora_no_contrastive": ["loss.contrastive=0"],
    "fora_no_consistency": ["loss.consistency=0"],
    "fora_no_fusion": ["adapter.fusion=false"],
    "fora_no_pbce": ["loss.pbce=false"],
}


def run_variant(name: str, sets: list[str], args) -> dict:
    base = [
        f"data.cache={args.cache}",
        f"trainer.max_steps={args.steps}",
        "trainer.progress=false",
        "eval.progress=false",
        "eval.zero_shot=false",
        "trainer.checkpoint_every=100000",
        f"backbone.pretrain_steps={args.pretrain}",
        f"data.difficulty={args.difficulty}",
    ]
    cfg = load_config(None, base + sets, pipeline.DEFAULTS)
    m = pipeline.train(cfg, Path(args.out) / name)
    step = m["train_seconds"] / m["steps"] if m.get("steps") else None
    return {
        "s_measure": m["s_measure"],
        "mae": m["mae"],
        "weighted_f": m["weighted_f"],
        "e_measure_mean": m["e_measure_mean"],
        "trainable_parameters": m.get("trainable_parameters", 0),
        "step_seconds": step,
    }


def plot(results: dict, png: Path) -> None:
    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in (
        (axes[0], "s_measure", "S-measure (higher is better)"),
        (axes[1], "mae", "MAE (lower is better)"),
    ):
        vals = [results[n][key] for n in names]
        ax.bar(range(len(names)), vals, color=["#999999"] + ["#4C72B0"] * (len(names) - 1))
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
        ax.set_title(title)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_cod")
    ap.add_argument("--cache", default="runs/_cache/cod")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--pretrain", type=int, default=150)
    ap.add_argument("--difficulty", type=float, default=0.5)
    ap.add_argument("--only", nargs="*", help="variant names to run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, sets in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        results[name] = run_variant(name, sets, args)
    header = f"{'variant':<22}{'S-measure':>10}{'MAE':>8}{'wF':>8}{'step s':>8}{'params':>9}"
    print(header + "\n" + "-" * len(header))
    for name, r in results.items():
        step = f"{r['step_seconds']:.3f}" if r["step_seconds"] else "-"
        print(
            f"{name:<22}{r['s_measure']:>10.3f}{r['mae']:>8.3f}{r['weighted_f']:>8.3f}{step:>8}"
            f"{r['trainable_parameters']:>9}"
        )
    (out / "bench_cod.json").write_text(
        json.dumps({"settings": vars(args), "results": results}, indent=2)
    )
    plot(results, out / "bench_cod.png")
    print(f"wrote {out / 'bench_cod.json'} and {out / 'bench_cod.png'}")


if __name__ == "__main__":
    main()
