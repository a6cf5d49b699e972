"""SLTrain's memory: training memory and step time of ``s B A + S`` against LoRA and full
fine-tuning, at equal accuracy, on the CLIP and OOD examples, side by side in one run.

Variants, each training the same layers (the MLP Linears of every block of the image tower)
and nothing else but, on OOD, the classifier head (trained in every variant):

    full          the layers' dense weights and biases train
    lora          LoRA r=4 on them (frozen dense weights)
    sltrain       SLTrain as an adapter (``dW = s B A + S``, r=4, density 0.02; frozen dense W0)
    sltrain_full  SLTrain as a full-weight replacement (``replace_weights``: W = s B A + S,
                  init from W0's truncated SVD, the dense weight dropped; r = d_min / 4,
                  density 0.05)

Examples (tiny stand-ins, everything generated, one CPU thread):

    clip  the shipped ``lorakit-shapes`` CLIP stand-in, 4-shot on the 8 ``COMBOS.task``
          colour-shape pairs in the ``dark`` style (never seen in pretraining), zero-shot
          text head; accuracy on a test set of the same classes.
    ood   the OOD example's tiny ViT (``demos/ood.yaml``'s architecture), pretrained here on
          every generated style (``--pretrain-steps``, cached in ``--out``), fine-tuned on
          the ID ``photo`` style; ID test accuracy and the mean over the 5 OOD styles.

Each variant's learning rate is chosen from ``--lrs`` on a validation split (seed 0), then
it trains ``--steps`` steps on each of ``--seeds`` (mean and 95 % t-interval). "Equal
accuracy": the target is the lowest of the variants' mean final validation accuracies; every
variant's validation accuracy is read every ``--eval-every`` steps and the first step at
which it reaches the target, times its median step time, is its time to that accuracy.

Memory is counted, not sampled (the stand-ins are far smaller than what the allocator and
the torch libraries hold): the tensors of the trained layers (dense weights, adapters or the
replacement, buffers such as the support), their gradients and AdamW's two moments (4 bytes
each, float32), and what autograd saves for backward over the whole step (each storage once,
parameters, buffers and the input excluded; ``saved_tensors_hooks``). Step time: the median
over the steps after the first 3 of the chosen runs, one thread.

    .venv/bin/python demos/bench_sltrain.py --out runs/bench-sltrain --results demos/results
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_sltrain_report import block_markdown, markdown, plot
from torch import nn

from lorakit.core import SLTrainWeightsConfig, inject, make_config, replace_weights
from lorakit.core.sltrain_full import init_error
from lorakit.core.targets import name_matches
from lorakit.data.intervals import mean_ci

VARIANTS = ("full", "lora", "sltrain", "sltrain_full")
OOD_CLASSES = ["circle", "square", "triangle", "cross", "star", "ring"]
OOD_STYLES = ["sketch", "texture", "clutter", "night", "painting"]


@dataclass
class Example:
    """A pretrained classifier (images -> logits), the layers every variant trains, the
    parameters trained in all of them (a head), and the generated splits."""

    name: str
    model: nn.Module
    targets: tuple[str, ...]
    always: tuple[str, ...]
    train: tuple[torch.Tensor, torch.Tensor]
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]  # val, test, and any OOD splits
    ood: tuple[str, ...] = ()


def _images(x) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


def clip_example(shots: int, n_classes: int) -> Example:
    from lorakit.data.captions import COMBOS, class_images, classname
    from lorakit.vision.clip.build import BackboneConfig, load_backbone
    from lorakit.vision.clip.classifier import ClipClassifier
    from lorakit.vision.clip.prompts import TEMPLATES

    bb = load_backbone(BackboneConfig())
    pairs = COMBOS.task[:n_classes]
    head = ClipClassifier(bb.model, bb.tokenizer, [classname(p) for p in pairs], TEMPLATES["clip"])
    mean, std = torch.tensor(bb.mean).view(1, 3, 1, 1), torch.tensor(bb.std).view(1, 3, 1, 1)

    class Normalised(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = head

        def forward(self, x):
            return self.net((x - mean) / std)

    def split(n, seed):
        x, y = class_images(pairs, n, bb.image_size, seed, "dark")
        return _images(x), torch.from_numpy(y)

    return Example(
        "clip",
        Normalised().eval(),
        (r"net\.clip\.visual\.transformer\.resblocks\.\d+\.mlp\.(c_fc|c_proj)",),
        (),
        split(shots, 100),
        {"val": split(24, 200), "test": split(40, 300)},
    )


def ood_example(out: Path, pretrain_steps: int, train_per_class: int) -> Example:
    from lorakit.data.shift import render
    from lorakit.vision.ood.build import BackboneConfig
    from lorakit.vision.ood.pretrain import pretrain_tiny
    from lorakit.vision.ood.tiny import tiny_vit

    cfg = BackboneConfig(
        kind="tiny_vit",
        image_size=32,
        patch_size=8,
        width=48,
        depth=3,
        heads=3,
        conv_stem=True,
        pretrain_steps=pretrain_steps,
    )
    path = out / f"tiny_vit_pretrained_{pretrain_steps}.pt"
    if not path.exists():
        pretrain_tiny(path, cfg, OOD_CLASSES)
    net = tiny_vit(cfg, len(OOD_CLASSES))
    net.load_state_dict(torch.load(path, weights_only=True)["state_dict"])

    class Normalised(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net((x - 0.5) / 0.5)

    def split(n, style, seed):
        x, y = render(OOD_CLASSES, n, style, 32, seed)
        return _images(x), torch.from_numpy(y)

    splits = {"val": split(20, "photo", 501), "test": split(30, "photo", 502)}
    for i, style in enumerate(OOD_STYLES):
        splits[style] = split(20, style, 600 + i)
    return Example(
        "ood",
        Normalised().eval(),
        (r"net\.encoder\.layers\.encoder_layer_\d+\.mlp\.(0|3)",),
        ("net.heads.head.",),
        split(train_per_class, "photo", 500),
        splits,
        tuple(OOD_STYLES),
    )


def target_names(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    return [n for n, _ in model.named_modules() if any(name_matches(n, p) for p in patterns)]


def prepare(ex: Example, variant: str, seed: int) -> tuple[nn.Module, list[nn.Parameter]]:
    """A fresh copy of the example's model set up for ``variant``; its trainable tensors."""
    torch.manual_seed(seed)
    model = copy.deepcopy(ex.model)
    model.requires_grad_(False)
    names = target_names(model, ex.targets)
    if variant == "full":
        for n in names:
            model.get_submodule(n).requires_grad_(True)
    elif variant in ("lora", "sltrain"):
        hyper = {"r": 4, "alpha": 4.0} | ({"density": 0.02} if variant == "sltrain" else {})
        inject(model, make_config(variant, targets=ex.targets, **hyper))
    elif variant == "sltrain_full":
        r = min(model.get_submodule(names[0]).weight.shape) // 4
        replace_weights(
            model, SLTrainWeightsConfig(r=r, alpha=float(r), density=0.05, targets=ex.targets)
        )
    else:
        raise ValueError(f"unknown variant {variant!r}")
    for n, p in model.named_parameters():
        if n.startswith(ex.always):
            p.requires_grad_(True)
    return model, [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def accuracy(model: nn.Module, split) -> float:
    model.eval()
    x, y = split
    logits = torch.cat([model(x[i : i + 256]) for i in range(0, len(x), 256)])
    model.train()
    return float((logits.argmax(-1) == y).float().mean())


def batches(train, batch_size: int, steps: int, seed: int):
    x, y = train
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        xb = x[idx]
        if xb.dim() == 4:  # images: random horizontal flips
            flip = torch.rand(batch_size, generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        yield xb, y[idx]


def timed_step(model, opt, xb, yb) -> float:
    """One cross-entropy training step; its wall time in seconds."""
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(xb), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def run(ex: Example, variant: str, lr: float, seed: int, args, final: bool) -> dict:
    """Train one variant; the validation curve, step times and (``final``) test scores."""
    model, params = prepare(ex, variant, seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    curve, times = [], []
    for step, (xb, yb) in enumerate(batches(ex.train, args.batch_size, args.steps, seed), 1):
        times.append(timed_step(model, opt, xb, yb))
        if step % args.eval_every == 0 or step == args.steps:
            curve.append((step, accuracy(model, ex.splits["val"])))
    out = {"variant": variant, "lr": lr, "seed": seed, "curve": curve, "times": times}
    if final:
        out["test"] = accuracy(model, ex.splits["test"])
        if ex.ood:
            out["ood"] = statistics.mean(accuracy(model, ex.splits[s]) for s in ex.ood)
    return out


def memory(ex: Example, variant: str, batch_size: int) -> dict:
    """Bytes of one training step (see the module docstring), by part."""
    model, params = prepare(ex, variant, 0)
    layers = [model.get_submodule(n) for n in target_names(model, ex.targets)]
    held = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for m in layers
        for t in [*m.parameters(), *m.buffers()]
    }
    x, y = next(batches(ex.train, batch_size, 1, 0))
    known = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers(), x]}
    saved: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in known:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    trainable = sum(p.numel() for p in params)
    out = {
        "trainable": trainable,
        "layer_weights": sum(held.values()),
        "grads_adamw": 3 * 4 * trainable,
        "saved": sum(saved.values()),
    }
    out["total"] = out["layer_weights"] + out["grads_adamw"] + out["saved"]
    return out


def study(ex: Example, args) -> dict:
    """Every variant on one example: lr choice, seeds, memory, time to the common accuracy."""
    rows = {}
    for v in VARIANTS:
        tried = {lr: run(ex, v, lr, 0, args, False)["curve"][-1][1] for lr in args.lrs}
        lr = max(tried, key=lambda k: (tried[k], -k))
        runs = [run(ex, v, lr, s, args, True) for s in args.seeds]
        rows[v] = {
            "lr": lr,
            "val_by_lr": tried,
            "runs": runs,
            "memory": memory(ex, v, args.batch_size),
        }
        print(f"{ex.name} {v}: lr {lr:g}, test {[round(r['test'], 3) for r in runs]}", flush=True)
    finals = {v: statistics.mean(r["curve"][-1][1] for r in row["runs"]) for v, row in rows.items()}
    target = min(finals.values())
    for row in rows.values():
        step_s = statistics.median(t for r in row["runs"] for t in r["times"][3:])
        reach = [
            next(s for s, a in r["curve"] if a >= target - 1e-9)
            if max(a for _, a in r["curve"]) >= target - 1e-9
            else None
            for r in row["runs"]
        ]
        got = [s for s in reach if s is not None]
        row |= {
            "step_ms": 1e3 * step_s,
            "steps_to_target": statistics.mean(got) if got else None,
            "reached": f"{len(got)}/{len(reach)}",
            "seconds_to_target": step_s * statistics.mean(got) if got else None,
        }
        for k in ("test", "ood"):
            if k in row["runs"][0]:
                row[k], row[k + "_ci"] = mean_ci([r[k] for r in row["runs"]])
    replaced, _ = prepare(ex, "sltrain_full", 0)
    base = {
        "test": accuracy(ex.model, ex.splits["test"]),
        "replaced_test": accuracy(replaced, ex.splits["test"]),
        "init_error": statistics.mean(
            init_error(ex.model.get_submodule(n), replaced.get_submodule(n))
            for n in target_names(ex.model, ex.targets)
        ),
    }
    if ex.ood:
        base["ood"] = statistics.mean(accuracy(ex.model, ex.splits[s]) for s in ex.ood)
    return {"target_val": target, "pretrained": base, "rows": rows}


def block_example() -> Example:
    """One ViT-B/16-sized MLP block (768 -> 3072 -> 768, random weights) on 8 x 197 tokens:
    where the trained layers, not the rest of a tiny network, hold the memory."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(768, 3072), nn.GELU(), nn.Linear(3072, 768))
    tokens = (torch.randn(8 * 197, 768), torch.randint(0, 768, (8 * 197,)))
    return Example("block", block, (r"0|2",), (), tokens, {})


def block_rows(steps: int = 4) -> dict:
    """Memory and the median step time (after one warm-up step) of each variant."""
    ex = block_example()
    n = len(ex.train[0])
    rows = {}
    for v in VARIANTS:
        model, params = prepare(ex, v, 0)
        opt = torch.optim.AdamW(params, lr=1e-4)
        times = []
        for xb, yb in batches(ex.train, n, steps + 1, 0):
            times.append(timed_step(model, opt, xb, yb))
        rows[v] = {"memory": memory(ex, v, n), "step_ms": 1e3 * statistics.median(times[1:])}
        print(f"block {v}: {rows[v]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-sltrain"))
    ap.add_argument("--results", type=Path, default=None, help="also write .md/.json/.png here")
    ap.add_argument("--examples", nargs="+", default=["clip", "ood"], choices=["clip", "ood"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--clip-classes", type=int, default=8, help="the first n COMBOS.task pairs")
    ap.add_argument("--ood-train-per-class", type=int, default=40)
    ap.add_argument("--pretrain-steps", type=int, default=800)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-block", action="store_true", help="skip the ViT-B-sized block")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    makers: dict[str, Callable[[], Example]] = {
        "clip": lambda: clip_example(args.shots, args.clip_classes),
        "ood": lambda: ood_example(args.out, args.pretrain_steps, args.ood_train_per_class),
    }
    results = {name: study(makers[name](), args) for name in args.examples}
    for res in results.values():
        for row in res["rows"].values():
            for r in row["runs"]:
                del r["times"]  # medians are kept; the raw times would only bloat the file
    block = block_rows() if not args.no_block else {}
    md = markdown(results, args) + (block_markdown(block) if block else "")
    md += f"\nWall time of the whole run: {time.perf_counter() - t0:.0f} s.\n"
    print(md)
    dests = [args.out] + ([args.results] if args.results else [])
    for d in dests:
        d.mkdir(parents=True, exist_ok=True)
        (d / "bench_sltrain.md").write_text(md)
        (d / "bench_sltrain.json").write_text(
            json.dumps(
                {
                    "args": {
                        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                    },
                    "results": results,
                    "block": block,
                },
                indent=1,
            )
        )
        plot(results, block, d / "bench_sltrain.png")


if __name__ == "__main__":
    main()
