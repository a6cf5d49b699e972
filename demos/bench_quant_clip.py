"""bench_quant's CLIP rows: the CLIP stand-in on a quantized base (fp32, 4, 3, 2 bits).

    .venv/bin/python demos/bench_quant.py --out demos/results --only clip

The data and the training loop are ``bench_clip``'s (``Bench``: the pretrained
``lorakit-shapes`` stand-in, the 4 base classes in the unseen ``dark`` style, ``shots``
images per class, the held-out pairs in the pretraining style). Quantized: every
``nn.Linear`` of both towers (attention output projections and MLPs; the fused ``in_proj``
is not a Linear and stays float), NF codes, group 64. Adapter: LoRA r=4 on q, k, v and the
MLPs (``qlora`` on a quantized base, ``lora`` on fp32, ``loftq`` at 4 bits: the same
trainable count), one learning rate for all (``--clip-lr``), AdamW + cosine.

Per row: zero-shot accuracy of the model right after initialisation (plain quantization
for LoRA / QLoRA, whose ``B = 0``; ``Q + dW`` for LoftQ) on the base-class test images,
95 % bootstrap interval over those images; few-shot accuracy after training, mean and 95 %
t-interval over seeds (each its own k-shot sample, augmentation and init); the held-out
accuracy after training (forgetting); model bytes (``model_bytes``: codes + scales, every
other tensor float32) against the fp32 model.
"""

from __future__ import annotations

import copy
import random
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from bench_clip import Bench

from lorakit.core import inject, model_bytes, quantize, regularization_loss, trainable_parameters
from lorakit.data.intervals import mean_ci, paired_diff
from lorakit.vision.clip.classifier import ClipClassifier
from lorakit.vision.clip.datasets import StepBatches
from lorakit.vision.clip.train import adapter_config, lr_factor

CONFIGS = (  # (label, bits, method)
    ("float32 + LoRA", None, "lora"),
    ("4-bit + QLoRA", 4, "qlora"),
    ("3-bit + QLoRA", 3, "qlora"),
    ("2-bit + QLoRA", 2, "qlora"),
    ("4-bit + LoftQ init", 4, "loftq"),
)
MODULES = ["q", "k", "v", "mlp"]


def bench_args(args) -> SimpleNamespace:
    """``Bench``'s options (bench_clip's defaults, seeds and steps from bench_quant)."""
    return SimpleNamespace(shots=args.clip_shots, steps=args.clip_steps, rank=4, batch_size=16,
                           style="dark", pool=16, val_per_class=8, test_per_class=40,
                           seeds=args.clip_seeds)


def initialised(bench: Bench, bits: int | None, method: str, seed: int):
    """A fresh copy of the stand-in, quantized (``bits``) with the adapter injected; the
    classifier on the base classes."""
    torch.manual_seed(seed)
    clip = copy.deepcopy(bench.clip)
    cfg = adapter_config({"method": method, "r": 4, "alpha": 4.0, "dropout": 0.1,
                          "modules": MODULES})
    if bits is None:
        inject(clip, cfg)
    else:  # LoftQ chooses the codes and its initial tensors here; QLoRA is injected after
        quantize(clip, bits=bits, group_size=64, adapter=cfg)
    return clip, ClipClassifier(clip, bench.tokenizer, bench.names["base"], bench._t())


@torch.no_grad()
def correct(bench: Bench, model: ClipClassifier, split: str) -> list[int]:
    """Per test image of ``split``: 1 when the classifier is right."""
    model.eval()
    names = bench.names["heldout" if split == "heldout" else "base"]
    model.set_classes(names, bench._t())
    x, y = bench.splits[split]
    logits = torch.cat([model(bench.norm(x[i:i + 256])) for i in range(0, len(x), 256)])
    return (logits.argmax(-1) == y).int().tolist()


def bootstrap(hits: list[int], draws: int = 2000) -> tuple[float, float, float]:
    """Accuracy and its 95 % bootstrap interval over the images."""
    rng = random.Random(0)
    n = len(hits)
    boot = sorted(sum(rng.choices(hits, k=n)) / n for _ in range(draws))
    return sum(hits) / n, boot[int(0.025 * (draws - 1))], boot[int(0.975 * (draws - 1))]


def train(bench: Bench, model: ClipClassifier, clip, seed: int, lr: float) -> int:
    """bench_clip's loop: AdamW, cosine, ``steps`` steps on the seed's k-shot sample."""
    a = bench.args
    x, y = bench.kshot(seed)
    params = trainable_parameters(clip)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, a.steps, 0, "cosine"))
    model.set_classes(bench.names["base"], bench._t())
    model.train()
    for xb, yb in StepBatches(x, y, a.batch_size, a.steps, seed, bench.norm):
        loss = F.cross_entropy(model(xb), yb) + regularization_loss(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return params.numel


def clip_rows(args) -> dict:
    """Every configuration: zero-shot at init (seed 0), few-shot over the seeds, bytes."""
    torch.set_num_threads(1)
    start = time.time()
    bench = Bench(bench_args(args))
    rows = []
    for label, bits, method in CONFIGS:
        row = {"label": label, "bits": bits, "method": method}
        t0 = time.time()
        for i, seed in enumerate(args.clip_seeds):
            clip, model = initialised(bench, bits, method, seed)
            if i == 0:
                row["zero_shot"] = bootstrap(correct(bench, model, "base"))
                row["zero_shot_heldout"] = bootstrap(correct(bench, model, "heldout"))
                row["bytes"] = model_bytes(clip)
            row["trainable"] = train(bench, model, clip, seed, args.clip_lr)
            row.setdefault("few_shot_all", []).append(sum(correct(bench, model, "base"))
                                                      / len(bench.splits["base"][1]))
            row.setdefault("heldout_all", []).append(sum(correct(bench, model, "heldout"))
                                                     / len(bench.splits["heldout"][1]))
        row["few_shot"] = mean_ci(row["few_shot_all"])
        row["heldout"] = mean_ci(row["heldout_all"])
        row["seconds"] = round(time.time() - t0, 1)
        print(f"clip {label}: zero-shot {row['zero_shot'][0]:.3f}, few-shot "
              f"{row['few_shot'][0]:.3f} ({row['seconds']} s)", flush=True)
        rows.append(row)
    a = bench.args
    return {"rows": rows, "shots": a.shots, "steps": a.steps, "seeds": list(args.clip_seeds),
            "lr": args.clip_lr, "test_images": len(bench.splits["base"][1]),
            "heldout_images": len(bench.splits["heldout"][1]),
            "seconds": round(time.time() - start)}


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def clip_table(clip: dict) -> list[str]:
    """The markdown lines of the CLIP section."""
    lines = [
        "",
        f"CLIP stand-in (`lorakit-shapes`, 4 unseen colour-shape classes in the `dark` style): "
        f"{clip['shots']} shots per class, {clip['steps']} steps, LoRA r=4 on q, k, v and the "
        f"MLPs of both towers, lr {clip['lr']:g}; every nn.Linear quantized (NF, group 64; the "
        "fused in_proj stays float). Zero-shot at init: the base classes' "
        f"{clip['test_images']} test images (held-out: {clip['heldout_images']} images of other "
        "pairs in the pretraining style), 95 % bootstrap over images; few-shot and held-out "
        f"after training: mean and 95 % t-interval over {len(clip['seeds'])} seeds.",
        "",
        "| model | zero-shot at init, base | zero-shot at init, held-out | few-shot, base | "
        "held-out after training | trainable | model bytes (x fp32) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in clip["rows"]:
        zs, zh, b = r["zero_shot"], r["zero_shot_heldout"], r["bytes"]
        lines.append(
            f"| {r['label']} | {pct(zs[0])} [{pct(zs[1])}, {pct(zs[2])}] | {pct(zh[0])} "
            f"[{pct(zh[1])}, {pct(zh[2])}] | {pct(r['few_shot'][0])} ± {pct(r['few_shot'][1])} "
            f"| {pct(r['heldout'][0])} ± {pct(r['heldout'][1])} | {r['trainable']:,} | "
            f"{b['total']:,} ({b['ratio']:.3f}) |"
        )
    q4 = next(r for r in clip["rows"] if r["bits"] == 4)["bytes"]
    lines.append("")
    lines.append(
        f"4-bit CLIP stand-in: quantized Linear weights {q4['quantized_layers']:,} bytes = "
        f"{q4['quantized_layers'] / (q4['dense_total'] - q4['other']):.3f}x their fp32 bytes; "
        f"the whole model {q4['ratio']:.3f}x (embeddings, in_proj, norms stay float32)."
    )
    return lines


def clip_deltas(clip: dict) -> dict:
    """Few-shot accuracy of each quantized row minus fp32 LoRA's, paired over seeds (the
    same k-shot sample and augmentation), mean and 95 % t-interval."""
    rows = clip["rows"]
    fp = rows[0]["few_shot_all"]
    out = {}
    for r in rows[1:]:
        d, h = mean_ci(paired_diff(r["few_shot_all"], fp))
        word = ("no significant change" if not abs(d) > h
                else "better" if d > 0 else "worse")
        out[f"CLIP {r['label']} few-shot vs float32 LoRA"] = (
            f"{100 * d:+.1f} ± {100 * h:.1f} points ({word})")
    return out
