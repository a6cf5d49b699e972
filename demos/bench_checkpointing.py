"""Activation checkpointing: peak training memory and step time, with and without.

    python demos/bench_checkpointing.py [--batch 4] [--steps 3] [--device cpu|cuda]

open_clip ViT-B-16's visual tower with random weights, LoRA r=4 on every block's MLP
(``c_fc``, ``c_proj``), one fresh process per setting (``off``, ``on``, alternated twice),
one optimizer step each after a warm-up step. Memory: CPU peak RSS growth over the process
before the first training step (``ru_maxrss``); CUDA ``max_memory_allocated`` growth.
Step time: the median of the timed steps. Prints a markdown table and writes
``demos/results/bench_checkpointing_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def one(mode: str, batch: int, steps: int, device: str) -> dict:
    import open_clip
    import torch

    from lorakit.core import inject
    from lorakit.core.checkpointing import checkpoint_blocks
    from lorakit.core.registry import make_config

    torch.manual_seed(0)
    visual = open_clip.create_model("ViT-B-16", pretrained=None).visual.to(device).eval()
    names = [n for n, _ in visual.named_modules() if n.endswith(("mlp.c_fc", "mlp.c_proj"))]
    inject(visual, make_config("lora", r=4, alpha=4), names=names)
    n_blocks = checkpoint_blocks(visual) if mode == "on" else 0
    opt = torch.optim.AdamW([p for p in visual.parameters() if p.requires_grad], lr=1e-4)
    x = torch.rand(batch, 3, 224, 224, device=device)
    cuda = device.startswith("cuda")
    times = []

    def step():
        t = time.perf_counter()
        loss = visual(x).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t

    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _current_rss_mb()
    step()  # warm-up (allocates AdamW state)
    times = [step() for _ in range(steps)]
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else _rss_mb() - base
    return {"mode": mode, "blocks": n_blocks, "peak_mb": peak, "step_s": statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one", choices=["on", "off"])
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.batch, a.steps, a.device)))
        return
    rows = []
    for mode in ("off", "on", "off", "on"):
        cmd = [sys.executable, __file__, "--one", mode, "--batch", str(a.batch),
               "--steps", str(a.steps), "--device", a.device]
        rows.append(json.loads(subprocess.check_output(cmd).decode().strip().splitlines()[-1]))
    med = {m: {k: statistics.median(r[k] for r in rows if r["mode"] == m)
               for k in ("peak_mb", "step_s")} for m in ("off", "on")}
    out = {"model": "open_clip ViT-B-16 visual, random weights, LoRA r=4 on mlp c_fc/c_proj",
           "batch": a.batch, "device": a.device, "runs": rows, "median": med,
           "memory_ratio": med["on"]["peak_mb"] / med["off"]["peak_mb"],
           "time_ratio": med["on"]["step_s"] / med["off"]["step_s"]}
    print("| checkpointing | peak growth (MB) | step (s) |\n|---|---|---|")
    for m in ("off", "on"):
        print(f"| {m} | {med[m]['peak_mb']:.0f} | {med[m]['step_s']:.2f} |")
    print(f"ratio on/off: memory {out['memory_ratio']:.2f}x, step time {out['time_ratio']:.2f}x")
    res = Path(__file__).parent / "results" / f"bench_checkpointing_{a.device.split(':')[0]}.json"
    res.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
