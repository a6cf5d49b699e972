"""Benchmark: every adapter method the CLIP pipeline trains, few-shot on the pretrained
stand-in (``lorakit-shapes``), over seeds, with mean and 95 % interval.

Protocol (all data generated, nothing downloaded):

- classes: the 8 ``captions.COMBOS.task`` colour-shape pairs, never seen in pretraining,
  rendered in a style pretraining never showed (``--style``, default ``dark``: low exposure, colour cast): the first
  4 are the base classes (trained, ``shots`` per class), the last 4 the novel classes.
- validation: other images of the base classes; the learning rate of each method is chosen
  there from ``--lrs`` (the same grid and the same seeds for every method).
- test: base accuracy (few-shot), novel accuracy (zero-shot transfer of the adapted model),
  their harmonic mean (CoOp's base-to-novel), and the held-out zero-shot accuracy on the
  8 ``COMBOS.heldout`` pairs in the pretraining style (its drop vs the base model is the
  forgetting Comp-LoRA is meant to limit). Test and held-out never take part in choosing.
- seeds: each seed draws its own k-shot sample, augmentation and adapter init.

    .venv/bin/python demos/bench_clip.py --out runs/bench-clip --results demos/results
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lorakit.core import inject, regularization_loss, trainable_parameters
from lorakit.core.methods import METHODS
from lorakit.data.captions import COMBOS, class_images, classname
from lorakit.data.intervals import mean_ci, paired_diff
from lorakit.data.runs import write_json
from lorakit.data.runtime.methods import check_method_supported
from lorakit.vision.clip.build import BackboneConfig, load_backbone
from lorakit.vision.clip.classifier import ClipClassifier
from lorakit.vision.clip.datasets import Normalize, StepBatches
from lorakit.vision.clip.evaluate import harmonic_mean
from lorakit.vision.clip.prompts import TEMPLATES
from lorakit.vision.clip.train import adapter_config, lr_factor


def supported_methods() -> list[str]:
    out = []
    for name in METHODS:
        try:
            check_method_supported(name)
            out.append(name)
        except ValueError:  # brings its own optimizer (GORP): not a pipeline method
            pass
    return out


class Bench:
    """The frozen stand-in, the generated splits (uint8 tensors) and one training routine."""

    def __init__(self, args):
        self.args = args
        bb = load_backbone(BackboneConfig())
        self.clip, self.tokenizer, self.size = bb.model, bb.tokenizer, bb.image_size
        self.norm = Normalize(bb.mean, bb.std)
        base, novel = COMBOS.task[:4], COMBOS.task[4:]
        self.names = {
            "base": [classname(p) for p in base],
            "novel": [classname(p) for p in novel],
            "heldout": [classname(p) for p in COMBOS.heldout],
        }
        st = args.style
        self.pool = self._split(base, args.pool, 100, st)
        self.splits = {
            "val": self._split(base, args.val_per_class, 200, st),
            "base": self._split(base, args.test_per_class, 300, st),
            "novel": self._split(novel, args.test_per_class, 301, st),
            "heldout": self._split(COMBOS.heldout, args.test_per_class, 400, "plain"),
        }
        self.zero_shot = self.evaluate(ClipClassifier(self.clip, self.tokenizer, ["x"], self._t()))

    def _t(self):
        return TEMPLATES["clip"]

    def _split(self, pairs, per_class, seed, style):
        x, y = class_images(pairs, per_class, self.size, seed, style)
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(y)

    @torch.no_grad()
    def accuracy(self, model: ClipClassifier, split: str) -> float:
        model.set_classes(self.names["heldout" if split == "heldout" else
                                     "novel" if split == "novel" else "base"], self._t())
        x, y = self.splits[split]
        logits = torch.cat([model(self.norm(x[i:i + 256])) for i in range(0, len(x), 256)])
        return float((logits.argmax(-1) == y).float().mean())

    def evaluate(self, model: ClipClassifier, splits=("val", "base", "novel", "heldout")):
        model.eval()
        return {s: self.accuracy(model, s) for s in splits}

    def kshot(self, seed: int):
        x, y = self.pool
        g = torch.Generator().manual_seed(seed)
        idx = torch.cat([torch.nonzero(y == c).flatten()[torch.randperm(int((y == c).sum()),
                         generator=g)[: self.args.shots]] for c in range(len(self.names["base"]))])
        return x[idx], y[idx]

    def train(self, method: str, lr: float, seed: int, splits) -> dict:
        """One run: adapter of ``method`` on a fresh copy of the stand-in; accuracies."""
        a = self.args
        torch.manual_seed(seed)
        clip = copy.deepcopy(self.clip)
        section = {"method": method, "r": a.rank, "alpha": float(a.rank), "dropout": 0.1}
        inject(clip, adapter_config(section))
        model = ClipClassifier(clip, self.tokenizer, self.names["base"], self._t())
        x, y = self.kshot(seed)
        batches = StepBatches(x, y, a.batch_size, a.steps, seed, self.norm)
        params = trainable_parameters(clip)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, a.steps, 0, "cosine"))
        model.train()
        for xb, yb in batches:
            loss = F.cross_entropy(model(xb), yb) + regularization_loss(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        out = self.evaluate(model, splits)
        out["trainable"] = params.numel
        return out


def summarise(method: str, lr: float, runs: list[dict], zs: dict) -> dict:
    row = {"method": method, "lr": lr, "seeds": len(runs), "trainable": runs[0]["trainable"]}
    cols = {
        "base": [r["base"] for r in runs],
        "novel": [r["novel"] for r in runs],
        "hm": [harmonic_mean(r["base"], r["novel"]) for r in runs],
        "heldout": [r["heldout"] for r in runs],
        "drop": [zs["heldout"] - r["heldout"] for r in runs],
    }
    for k, v in cols.items():
        row[k], row[k + "_ci"] = mean_ci(v)
        row[k + "_all"] = v
    return row


def ci(row, k, scale=100.0):
    h = row[k + "_ci"]
    return f"{scale * row[k]:.1f} ± {scale * h:.1f}" if not math.isnan(h) else f"{scale * row[k]:.1f}"


def markdown(rows: list[dict], zs: dict, args, lora_vs_comp: dict) -> str:
    chance = 100 / len(COMBOS.heldout)
    lines = [
        f"## Few-shot CLIP on the `lorakit-shapes` stand-in ({args.shots} shots, {args.steps} "
        f"steps, rank {args.rank}, style `{args.style}`, {len(args.seeds)} seeds, 95 % t-interval)",
        "",
        f"Zero-shot (the base model): base {100 * zs['base']:.1f}, novel {100 * zs['novel']:.1f}, "
        f"HM {100 * harmonic_mean(zs['base'], zs['novel']):.1f}, held-out (unseen pairs, "
        f"pretraining style) {100 * zs['heldout']:.1f} (chance {chance:.1f} on 4 / 4 / 8 "
        f"classes: 25 / 25 / {chance:.1f}). Learning rate chosen per method on the validation "
        f"split from {list(args.lrs)}. Accuracies in %, drop in points.",
        "",
        "| method | lr | trainable | base (few-shot) | novel | HM | held-out zero-shot | "
        "held-out drop |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -r["base"]):
        lines.append(
            f"| {r['method']} | {r['lr']:g} | {r['trainable']:,} | {ci(r, 'base')} | "
            f"{ci(r, 'novel')} | {ci(r, 'hm')} | {ci(r, 'heldout')} | {ci(r, 'drop')} |"
        )
    if lora_vs_comp:
        d = lora_vs_comp
        lines += [
            "",
            f"Comp-LoRA minus LoRA, paired by seed: few-shot base {d['base']:+.1f} ± "
            f"{d['base_ci']:.1f} points, held-out drop {d['drop']:+.1f} ± {d['drop_ci']:.1f} "
            f"points. {d['verdict']}",
        ]
    return "\n".join(lines) + "\n"


def compare(rows: dict) -> dict:
    """Comp-LoRA vs LoRA: paired per-seed differences of few-shot accuracy and drop."""
    if "lora" not in rows or "comp_lora" not in rows:
        return {}
    c, lo = rows["comp_lora"], rows["lora"]
    out = {}
    for k in ("base", "drop"):
        m, h = mean_ci(paired_diff(c[k + "_all"], lo[k + "_all"]))
        out[k], out[k + "_ci"] = 100 * m, 100 * h
    equal = abs(out["base"]) <= out["base_ci"]
    smaller = out["drop"] + out["drop_ci"] < 0
    if equal and smaller:
        v = "Goal met: equal few-shot accuracy within the interval, smaller held-out drop."
    elif equal:
        v = ("Goal not met: few-shot accuracy equal within the interval, but the held-out "
             "drop is not smaller beyond the interval.")
    else:
        v = ("Goal not met as stated: the few-shot accuracies differ beyond the interval, so "
             "the drops are not compared at equal few-shot accuracy.")
    out["verdict"] = v
    return out


def plot(rows: list[dict], zs: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in rows:
        hl = r["method"] in ("lora", "comp_lora")
        a.errorbar(100 * r["base"], 100 * r["drop"], xerr=100 * np.nan_to_num(r["base_ci"]),
                   yerr=100 * np.nan_to_num(r["drop_ci"]), fmt="o", ms=7 if hl else 4,
                   color="C3" if r["method"] == "comp_lora" else "C0" if hl else "grey")
        a.annotate(r["method"], (100 * r["base"], 100 * r["drop"]), fontsize=7,
                   textcoords="offset points", xytext=(4, 3))
    a.axvline(100 * zs["base"], ls=":", color="grey", label="zero-shot base accuracy")
    a.axhline(0, color="black", lw=0.5)
    a.set_xlabel("few-shot base accuracy (%)")
    a.set_ylabel("held-out zero-shot drop (points)")
    a.legend(fontsize=7)
    order = sorted(rows, key=lambda r: -r["hm"])
    b.bar([r["method"] for r in order], [100 * r["hm"] for r in order],
          yerr=[100 * np.nan_to_num(r["hm_ci"]) for r in order], color="#4C72B0")
    b.axhline(100 * harmonic_mean(zs["base"], zs["novel"]), ls=":", color="grey",
              label="zero-shot HM")
    b.set_ylabel("base-to-novel harmonic mean (%)")
    b.tick_params(axis="x", rotation=60, labelsize=7)
    b.legend(fontsize=7)
    fig.suptitle("few-shot CLIP on the lorakit-shapes stand-in, mean and 95 % interval")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def standin_table(bench: Bench, per_class: int, folder: Path) -> str:
    """Zero-shot accuracy of the stand-in (and of the same architecture at random init) on
    pair groups pretraining saw and never saw, pretraining style: the offline CLIP claim."""
    from lorakit.data.captions import COMBOS as C

    random_clip = load_backbone(BackboneConfig(pretrained=None)).model
    groups = {"seen in pretraining (8 of 56)": C.pretrain[::7], "unseen: heldout": C.heldout,
              "unseen: task": C.task, "unseen: val": C.val, "unseen: all 24": C.unseen()}
    lines = ["| pairs (plain style) | classes | chance | stand-in zero-shot | x chance | "
             "random init |", "|---|---|---|---|---|---|"]
    for name, pairs in groups.items():
        x, y = class_images(pairs, per_class, bench.size, 500, "plain")
        x = bench.norm(torch.from_numpy(x).permute(0, 3, 1, 2))
        accs = []
        for clip in (bench.clip, random_clip):
            m = ClipClassifier(clip, bench.tokenizer, [classname(p) for p in pairs], bench._t())
            with torch.no_grad():
                accs.append(float((m.eval()(x).argmax(-1) == torch.from_numpy(y)).float().mean()))
        chance = 1 / len(pairs)
        lines.append(f"| {name} | {len(pairs)} | {100 * chance:.1f} | {100 * accs[0]:.1f} | "
                     f"{accs[0] / chance:.1f} | {100 * accs[1]:.1f} |")
    md = "\n".join(lines) + "\n"
    (folder / "bench_clip_standin.md").write_text(md)
    return md


def curve(bench: Bench, methods: list[str], args, zs: dict) -> list[dict]:
    """Every learning rate of the grid on the test seeds (no choosing): the trade-off between
    few-shot accuracy and held-out drop, to compare methods at equal few-shot accuracy."""
    rows = []
    for method in methods:
        for lr in args.lrs:
            runs = [bench.train(method, lr, s, ("base", "novel", "heldout")) for s in args.seeds]
            rows.append(summarise(method, lr, runs, zs))
            r = rows[-1]
            print(f"curve {method:<10} lr {lr:g} base {ci(r, 'base')} drop {ci(r, 'drop')}",
                  flush=True)
    return rows


def curve_outputs(rows: list[dict], zs: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["| method | lr | base (few-shot) | HM | held-out drop |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['lr']:g} | {ci(r, 'base')} | {ci(r, 'hm')} | "
              f"{ci(r, 'drop')} |" for r in rows]
    (folder / "bench_clip_curve.md").write_text("\n".join(lines) + "\n")
    write_json(folder / "bench_clip_curve.json", {"zero_shot": zs, "rows": rows})
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        rs = [r for r in rows if r["method"] == method]
        ax.errorbar([100 * r["base"] for r in rs], [100 * r["drop"] for r in rs],
                    xerr=[100 * np.nan_to_num(r["base_ci"]) for r in rs],
                    yerr=[100 * np.nan_to_num(r["drop_ci"]) for r in rs],
                    fmt="o-", color=f"C{i}", label=method, capsize=2)
        for r in rs:
            ax.annotate(f"{r['lr']:g}", (100 * r["base"], 100 * r["drop"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -8))
    ax.set_xlabel("few-shot base accuracy (%)")
    ax.set_ylabel("held-out zero-shot drop (points)")
    ax.set_title("accuracy vs forgetting over the lr grid (labels: lr)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "bench_clip_curve.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-clip"))
    ap.add_argument("--results", type=Path, default=None, help="also write the table + plot here")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--val-seeds", type=int, nargs="+", default=[100, 101])
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--style", default="dark")
    ap.add_argument("--pool", type=int, default=16, help="train images per class to draw from")
    ap.add_argument("--val-per-class", type=int, default=24)
    ap.add_argument("--test-per-class", type=int, default=40)
    ap.add_argument("--curve", default="", help="methods to run at every lr on the test seeds")
    ap.add_argument("--skip-main", action="store_true", help="only the --curve/--standin runs")
    ap.add_argument("--standin", action="store_true", help="zero-shot table of the stand-in")
    args = ap.parse_args()
    torch.set_num_threads(1)
    methods = supported_methods() if args.methods == "all" else args.methods.split(",")
    bench, start = Bench(args), time.monotonic()
    zs = bench.zero_shot
    print(f"zero-shot: {json.dumps(zs)}", flush=True)
    if args.standin:
        for folder in [args.out] + ([args.results] if args.results else []):
            folder.mkdir(parents=True, exist_ok=True)
            print(standin_table(bench, args.test_per_class, folder))
    if args.curve:
        rows = curve(bench, args.curve.split(","), args, zs)
        for folder in [args.out] + ([args.results] if args.results else []):
            folder.mkdir(parents=True, exist_ok=True)
            curve_outputs(rows, zs, folder)
    if args.skip_main:
        return
    rows, sweeps, errors = {}, {}, {}
    for method in methods:
        try:
            val = {lr: float(np.mean([bench.train(method, lr, s, ("val",))["val"]
                                      for s in args.val_seeds])) for lr in args.lrs}
            lr = max(val, key=val.get)
            runs = [bench.train(method, lr, s, ("base", "novel", "heldout")) for s in args.seeds]
        except (ValueError, RuntimeError, TypeError) as e:  # report, keep benchmarking the rest
            errors[method] = f"{type(e).__name__}: {e}"
            print(f"{method}: FAILED {errors[method]}", flush=True)
            continue
        sweeps[method], rows[method] = val, summarise(method, lr, runs, zs)
        r = rows[method]
        print(f"{method:<11} lr {lr:g} base {ci(r, 'base')} novel {ci(r, 'novel')} "
              f"drop {ci(r, 'drop')}  ({time.monotonic() - start:.0f} s)", flush=True)
    d = compare(rows)
    md = markdown(list(rows.values()), zs, args, d)
    if errors:
        md += "\nNot run: " + "; ".join(f"{k} ({v})" for k, v in errors.items()) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"zero_shot": zs, "rows": list(rows.values()), "val_sweep": sweeps,
               "comp_vs_lora": d, "errors": errors,
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    for folder in [args.out] + ([args.results] if args.results else []):
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "bench_clip.json", payload)
        (folder / "bench_clip.md").write_text(md)
        plot(list(rows.values()), zs, folder / "bench_clip.png")
    print(md)


if __name__ == "__main__":
    main()
