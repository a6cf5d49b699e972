"""Benchmark: GORP against the continual baselines, on the CLIP and the Whisper sequence.

For every method (``lorakit.data.continual.METHODS``) and seed, runs the sequence of the
domain's demo config (``demos/continual.yaml``, ``demos/continual_whisper.yaml``) with the
same per-task budget and the same learning-rate candidates (chosen per task on the
validation split; with ``--sweep-once`` the seed-0 choices are reused by later seeds), then
writes a Markdown table (mean and 95 % t-interval over seeds of the average final score,
backward transfer, forward transfer, optimizer state and training time), the mean matrices
as one heatmap, and all numbers as JSON. Runs resume: re-running skips finished work.

    .venv/bin/python demos/bench_continual.py --domain clip --seeds 0 1 2 --out runs/bench-cl
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
from pathlib import Path

import torch

from lorakit.apps import continual as pipeline
from lorakit.data.continual import METHODS, run_sequence
from lorakit.data.runs import atomic_write_text, load_config, write_json

CONFIGS = {"clip": "continual.yaml", "whisper": "continual_whisper.yaml"}
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (0 for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    t = T95.get(len(values) - 1, 1.96)
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def fmt(values, scale=1.0, digits=3) -> str:
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "n/a"
    m, h = interval(vals)
    return f"{m:.{digits}f} ± {h:.{digits}f}"


def share_before(domain: str, root: Path, run: Path) -> None:
    """Whisper starts from the same pretrained tiny.en whatever the method or seed, so the
    scores before training (``before.json``) are computed once and copied to later runs."""
    done = sorted(root.glob("*/*/before.json"))
    if domain == "whisper" and done and not (run / "before.json").exists():
        run.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(done[0], run / "before.json")


def run_all(domain: str, methods, seeds, out: Path, sweep_once: bool, overrides) -> dict:
    base = Path(__file__).with_name(CONFIGS[domain])
    results: dict[str, list[dict]] = {}
    for method in methods:
        chosen = None
        for seed in seeds:
            sets = [f"continual.method={method}", f"trainer.seed={seed}", *overrides]
            if sweep_once and chosen is not None:
                sets.append(f"optim.task_lr={chosen}")
            cfg = load_config(base, sets, pipeline.DEFAULTS)
            share_before(domain, out / domain, out / domain / method / f"s{seed}")
            try:
                metrics = run_sequence(pipeline.make_domain(cfg), cfg, out / domain / method / f"s{seed}")
            except Exception as e:  # noqa: BLE001 - report it, go on with the other methods
                print(f"{domain} {method} seed {seed} FAILED: {type(e).__name__}: {e}", flush=True)
                break
            chosen = chosen or metrics["chosen_lr"]
            results.setdefault(method, []).append(metrics)
            write_json(out / domain / "partial.json", results)
            print(f"{domain} {method} seed {seed}: average {metrics['average']:.4f} "
                  f"bwt {metrics['bwt']} state {metrics['optimizer_state_max']}", flush=True)  # fmt: skip
    return results


def table(domain: str, results: dict) -> str:
    first = next(iter(results.values()))[0]
    metric, better = first["metric"], "higher" if first["higher_is_better"] else "lower"
    head = (f"| method | average final {metric} ({better} is better) | BWT (< 0: forgetting) "
            "| FWT | optimizer state (floats, max over tasks) | train s (all tasks) |")  # fmt: skip
    lines = [head, "|" + "---|" * 6]
    for method, runs in results.items():
        lines.append(
            f"| {method} | {fmt([r['average'] for r in runs])} | {fmt([r['bwt'] for r in runs])} "
            f"| {fmt([r['fwt'] for r in runs])} | {fmt([r['optimizer_state_max'] for r in runs], digits=0)} "
            f"| {fmt([r['train_seconds'] for r in runs], digits=1)} |"
        )
    extras = first.get("extras") or {}
    for name in extras:
        lines += ["", f"{name} (before any training, then after each task; mean over seeds):", ""]
        for method, runs in results.items():
            cols = zip(*[r["extras"][name] for r in runs], strict=True)
            lines.append(f"- {method}: " + ", ".join(f"{statistics.fmean(c):.3f}" for c in cols))
    return "\n".join(lines) + "\n"


def heatmap(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 3.2), squeeze=False)
    for ax, (method, runs) in zip(axes[0], results.items(), strict=True):
        mats = torch.tensor([r["matrix"] for r in runs]).mean(0)
        ax.imshow(mats, vmin=0, vmax=1, cmap="viridis" if runs[0]["higher_is_better"] else "viridis_r")
        for i in range(mats.shape[0]):
            for j in range(mats.shape[1]):
                ax.text(j, i, f"{mats[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
        tasks = runs[0]["tasks"]
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, fontsize=7)
        ax.set_yticks(range(mats.shape[0]), [f"after {i + 1}" for i in range(mats.shape[0])]
                      if mats.shape[0] > 1 else ["after all"], fontsize=7)  # fmt: skip
        ax.set_title(method, fontsize=9)
    fig.suptitle(f"mean task-by-task {runs[0]['metric']} over {len(runs)} seeds", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-continual"))
    ap.add_argument("--results", type=Path, default=Path("demos/results"))
    ap.add_argument("--sweep-once", action="store_true", help="later seeds reuse seed 0's lrs")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="config override")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = run_all(args.domain, args.methods, args.seeds, args.out, args.sweep_once, args.sets)
    md = table(args.domain, results)
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results / f"continual_{args.domain}.md", md)
    write_json(args.results / f"continual_{args.domain}.json", results)
    heatmap(results, args.results / f"continual_{args.domain}_matrices.png")
    print(md)


if __name__ == "__main__":
    main()
