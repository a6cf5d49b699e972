"""Benchmark: LoRA vs Block-LoRA vs Comp-LoRA for few-shot CLIP at the same rank.

On the generated shapes task with a tiny open_clip backbone, trains each method with the
same recipe and reports test accuracy, trainable parameters and the training step time
(forward + backward + AdamW step, median over timed steps) as a table, a JSON file and a PNG.

    .venv/bin/python demos/bench_clip.py --out runs/bench-clip [--steps 150] [--rank 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lorakit.core import inject, trainable_parameters
from lorakit.data.runs import load_config, write_json
from lorakit.vision.clip import pipeline
from lorakit.vision.clip.datasets import Normalize, StepBatches, load_all
from lorakit.vision.clip.train import adapter_config

METHODS = ("lora", "block_lora", "comp_lora")
DEMO = Path(__file__).with_name("clip.yaml")


def step_time(cfg: dict, data, repeats: int) -> float:
    """Median seconds of one training step (fwd + bwd + optimizer) for cfg's adapter."""
    model, bb = pipeline.build_classifier(cfg, data.train.classnames)
    inject(model.clip, adapter_config(cfg["adapter"]))
    model.train()
    images, labels = load_all(data.train, bb.image_size)
    bs = int(cfg["optim"]["batch_size"])
    batches = StepBatches(
        images, labels, bs, repeats + 3, 0, Normalize(bb.mean, bb.std), train_augment=False
    )
    opt = torch.optim.AdamW(trainable_parameters(model.clip), lr=1e-3)
    times = []
    for i, (x, y) in enumerate(batches):
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:  # warm-up steps excluded
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def plot(rows: list[dict], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    for r in rows:
        a.scatter(r["trainable_parameters"], r["accuracy"], s=60)
        a.annotate(
            r["method"],
            (r["trainable_parameters"], r["accuracy"]),
            textcoords="offset points",
            xytext=(5, 5),
        )
    a.axhline(rows[0]["chance"], ls=":", color="grey", label="chance")
    a.set_xlabel("trainable parameters")
    a.set_ylabel("test accuracy")
    a.legend()
    b.bar([r["method"] for r in rows], [1000 * r["step_time_s"] for r in rows], color="#4C72B0")
    b.set_ylabel("train step time (ms)")
    fig.suptitle(
        f"few-shot CLIP, rank {rows[0]['rank']}, {rows[0]['shots']} shots (tiny backbone, CPU)"
    )
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("runs/bench-clip"))
    ap.add_argument("--config", type=Path, default=DEMO)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--timed-steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for method in METHODS:
        overrides = [
            f"adapter.method={method}",
            f"adapter.r={args.rank}",
            f"adapter.alpha={float(args.rank)}",
            f"trainer.max_steps={args.steps}",
            "trainer.progress=false",
            "data.heldout=null",
            f"data.root={args.out / 'data'}",
        ]
        cfg = load_config(args.config, overrides, pipeline.DEFAULTS)
        if method != "comp_lora":  # the demo config carries Comp-LoRA's own field
            cfg["adapter"].pop("energy", None)
        m = pipeline.train(cfg, args.out / method)
        cfg["data"] = pipeline.resolve_data(cfg["data"], args.out / method)
        t = step_time(cfg, pipeline.load_data(cfg["data"]), args.timed_steps)
        rows.append(
            {
                "method": method,
                "rank": args.rank,
                "shots": m["shots"],
                "accuracy": m["accuracy"],
                "zero_shot_accuracy": m["zero_shot_accuracy"],
                "chance": m["chance"],
                "trainable_parameters": m["trainable_parameters"],
                "step_time_s": t,
            }
        )
    print(f"\n{'method':<12}{'accuracy':>10}{'trainable':>12}{'step ms':>10}")
    for r in rows:
        print(
            f"{r['method']:<12}{r['accuracy']:>10.3f}{r['trainable_parameters']:>12,}{1000 * r['step_time_s']:>10.1f}"
        )
    write_json(
        args.out / "bench_clip.json",
        {"rows": rows, "steps": args.steps, "config": str(args.config)},
    )
    plot(rows, args.out / "bench_clip.png")
    print(f"\nwrote {args.out / 'bench_clip.json'} and {args.out / 'bench_clip.png'}")


if __name__ == "__main__":
    main()
