"""Benchmark: LARGO vs LoRA (and linear probe, full fine-tuning, WiSE-FT) under shift, over
seeds, with hyper-parameters chosen on a validation split.

Protocol (the tiny ViT "foundation" model of ``demos/ood.yaml``, pretrained once on every
generated style, fine-tuned on the ID ``photo`` style):

1. Sweep: every method gets the same number of trials (4) at the same step budget on data
   seed 0; each trial is scored on a VALIDATION set (fresh ID images from their own seed).
   The ID test set and the OOD sets are never read during the sweep. LARGO's trials vary
   ``lr`` and ``gamma_rel``/``mu``; the others vary ``lr``.
2. Test: each method with its chosen trial over ``--seeds`` (a new data sample and a new
   initialisation per seed); ID accuracy, mean OOD accuracy over the styles, the WiSE-FT
   curve of every method (alpha 0..1), and from it the OOD accuracy at a matched ID
   accuracy (per seed, the lower of LoRA's and LARGO's final ID accuracy: both curves are
   read there). Effective robustness is measured against the line fitted (logit space) on
   the baselines' per-seed points: pretrained, linear probe, full fine-tuning.

    .venv/bin/python demos/bench_ood.py --out runs/bench-ood --results demos/results

Writes ``<results>/bench_ood.md`` (tables, mean ± 95 % interval), ``bench_ood.json`` and
``bench_ood_effective_robustness.png``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
from pathlib import Path

import torch
import yaml

from lorakit.data.intervals import fmt, mean_ci, paired_diff
from lorakit.data.runs import deep_update, load_config, write_json
from lorakit.data.shift import ShiftTask, write_shift_task
from lorakit.vision.ood import pipeline
from lorakit.vision.ood.robustness import effective_robustness, fit_line

DEMO = Path(__file__).with_name("ood.yaml")
CLASSES = ["circle", "square", "triangle", "cross", "star", "ring"]
STYLES = ["sketch", "texture", "clutter", "night", "painting"]
ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
METHOD = {
    "linear_probe": {"method": "linear_probe"},
    "lora": {"method": "lora", "r": 4, "alpha": 4},
    "full": {"method": "full"},
    "largo": {"method": "largo", "r": 4, "alpha": 4},
}
# the same number of trials per method; grids centred on each method's usual range
SWEEP = {
    "linear_probe": [{"optim": {"lr": v}} for v in (3e-3, 1e-2, 3e-2, 1e-1)],
    "lora": [{"optim": {"lr": v}} for v in (1e-3, 3e-3, 1e-2, 3e-2)],
    "full": [{"optim": {"lr": v}} for v in (1e-4, 3e-4, 1e-3, 3e-3)],
    "largo": [
        {"optim": {"lr": lr}, "adapter": {"hyper": {"gamma_rel": g, "mu": mu}}}
        for lr in (3e-3, 1e-2)
        for g, mu in ((0.01, 0.01), (0.05, 0.001))
    ],
}


def task(root: Path, seed: int, args, val: bool = False) -> dict:
    """A generated shift task; the validation task has no OOD sets and its own seed."""
    t = ShiftTask(
        classes=CLASSES,
        size=32,
        train_per_class=args.per_class,
        test_per_class=args.per_class // 2,
        ood_per_class=args.per_class // 2,
        ood_styles=[] if val else STYLES,
        subset_style=None,
        seed=(900_001 if val else 1000 * seed + 1),
    )
    return write_shift_task(root / ("val" if val else f"task-s{seed}"), t)


def config(base: dict, method: str, trial: dict, data: dict, seed: int, steps: int, wise) -> dict:
    cfg = deep_update(copy.deepcopy(base), {"adapter": METHOD[method]})
    cfg["adapter"]["hyper"] = {}  # demos/ood.yaml's LARGO fields apply to LARGO trials only
    cfg = deep_update(cfg, trial)
    cfg["data"] = data
    cfg["trainer"] = {**cfg["trainer"], "max_steps": steps, "seed": seed, "progress": False}
    cfg["trainer"]["resume"] = False
    cfg["eval"] = {**cfg["eval"], "corruptions": [], "wise_alphas": wise}
    return cfg


def folders(desc: dict, id_test: str, with_ood: bool) -> dict:
    ood = [{"name": n, "root": s["root"]} for n, s in desc["ood"].items()] if with_ood else []
    return {
        "kind": "folders",
        "id_train": desc["id_train"],
        "id_test": id_test,
        "ood": ood,
        "classes": desc["classes"],
    }


def sweep(base: dict, args, out: Path) -> dict:
    """Per method: every trial's validation ID accuracy and the chosen trial."""
    desc, val = task(out / "data", 0, args), task(out / "data", 0, args, val=True)
    data = folders(desc, val["id_test"], with_ood=False)
    chosen = {}
    for m, trials in SWEEP.items():
        scores = []
        for k, trial in enumerate(trials):
            cfg = config(base, m, trial, data, 0, args.steps, [])
            res = pipeline.train(cfg, out / "sweep" / f"{m}-t{k}")
            scores.append(res["id_accuracy"])
            print(f"sweep {m} {trial}: val ID {res['id_accuracy']:.3f}", flush=True)
        best = max(range(len(trials)), key=lambda i: scores[i])
        chosen[m] = {"trial": trials[best], "val_id": scores, "best": best}
    return chosen


def on_curve(curve: list[tuple[float, float]], target: float) -> float:
    """OOD accuracy where the (ID, OOD) curve (alpha 0 -> 1) first reaches ID ``target``."""
    for (i0, o0), (i1, o1) in zip(curve, curve[1:], strict=False):
        if min(i0, i1) <= target <= max(i0, i1):
            w = 0.0 if i1 == i0 else (target - i0) / (i1 - i0)
            return o0 + w * (o1 - o0)
    return math.nan


def test(base: dict, chosen: dict, args, out: Path) -> dict:
    runs = {m: [] for m in SWEEP}
    for s in args.seeds:
        desc = task(out / "data", s, args)
        data = folders(desc, desc["id_test"], with_ood=True)
        for m in SWEEP:
            cfg = config(base, m, chosen[m]["trial"], data, s, args.steps, ALPHAS)
            r = pipeline.train(cfg, out / "test" / f"{m}-s{s}")
            runs[m].append(
                {
                    "seed": s,
                    "id": r["id_accuracy"],
                    "ood": r["ood_accuracy"],
                    "per_style": r["ood"],
                    "curve": [(w["id_accuracy"], w["ood_accuracy"]) for w in r["wise"]],
                }
            )
            print(f"seed {s} {m}: ID {r['id_accuracy']:.3f} OOD {r['ood_accuracy']:.3f}", flush=True)
    return runs


def analyse(runs: dict) -> dict:
    """Per-seed derived numbers: matched-ID OOD, WiSE-FT(full, 0.5), effective robustness."""
    n = len(runs["lora"])
    pre = [runs["lora"][i]["curve"][0] for i in range(n)]  # alpha 0 = the pretrained model
    wise = [runs["full"][i]["curve"][ALPHAS.index(0.5)] for i in range(n)]
    base_pts = pre + [(r["id"], r["ood"]) for m in ("linear_probe", "full") for r in runs[m]]
    line = fit_line(base_pts)
    rows = {"pretrained": pre, "wise_ft(full,0.5)": wise}
    rows.update({m: [(r["id"], r["ood"]) for r in runs[m]] for m in SWEEP})
    table = {}
    for name, pts in rows.items():
        table[name] = {
            "id": [p[0] for p in pts],
            "ood": [p[1] for p in pts],
            "eff_rob": [effective_robustness(line, *p) for p in pts],
        }
    target = [min(runs["lora"][i]["id"], runs["largo"][i]["id"]) for i in range(n)]
    matched = {
        m: [on_curve(runs[m][i]["curve"], target[i]) for i in range(n)] for m in ("lora", "largo")
    }
    return {"table": table, "line": line, "target": target, "matched": matched}


def plot(an: dict, png: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 5))
    every = []
    for k, (name, row) in enumerate(an["table"].items()):
        c = plt.get_cmap("tab10")(k)
        ax.scatter(row["id"], row["ood"], color=c, alpha=0.35, s=14)
        (mi, hi), (mo, ho) = mean_ci(row["id"]), mean_ci(row["ood"])
        ax.errorbar(mi, mo, xerr=hi, yerr=ho, fmt="o", color=c, capsize=3, label=name)
        every += row["id"]
    if an["line"] is not None:
        xs = np.linspace(max(min(every) - 0.03, 0.01), min(max(every) + 0.03, 0.99), 60)
        ys = [an["line"].predict(float(x)) for x in xs]
        ax.plot(xs, ys, "k--", lw=1, label="baselines' line (logit fit)")
    ax.set_xlabel("ID accuracy (photo style, test split)")
    ax.set_ylabel("OOD accuracy (mean over 5 styles)")
    ax.set_title(f"Effective robustness, tiny ViT, {steps} steps (mean ± 95 % CI; dots: seeds)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def short(trial: dict) -> str:
    """``lr=0.003, gamma_rel=0.01, mu=0.01`` for a sweep trial."""
    flat = {**trial.get("optim", {}), **trial.get("adapter", {}).get("hyper", {})}
    return ", ".join(f"{k}={v:g}" for k, v in flat.items())


def markdown(an: dict, chosen: dict, args) -> str:
    lines = [
        f"# OOD benchmark: tiny ViT on the generated shift task ({len(args.seeds)} seeds)",
        "",
        f"{args.steps} steps per run; hyper-parameters chosen on a validation split (fresh ID "
        "images) by a 4-trial sweep per method on seed 0; test ID and OOD sets never seen in "
        "the sweep. Mean ± 95 % t-interval over seeds (data sample and init).",
        "",
        "| method | chosen | ID acc | OOD acc | drop ID->OOD | eff. robustness |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in an["table"].items():
        ch = short(chosen[name]["trial"]) if name in chosen else "-"
        drop = paired_diff(row["id"], row["ood"])
        eff = row["eff_rob"]
        lines.append(
            f"| {name} | {ch} | {fmt(row['id'])} | "
            f"{fmt(row['ood'])} | {fmt(drop)} | {fmt(eff) if None not in eff else 'n/a'} |"
        )
    la, lo = an["matched"]["largo"], an["matched"]["lora"]
    diff = paired_diff(la, lo)
    m, h = mean_ci(diff)
    verdict = (
        "no significant difference (the interval contains 0)"
        if math.isnan(h) or abs(m) <= h
        else ("LARGO higher" if m > 0 else "LoRA higher")
    )
    lines += [
        "",
        "## OOD accuracy at matched ID accuracy (read on each method's WiSE-FT curve)",
        "",
        f"Per seed the matched ID is the lower of LoRA's and LARGO's final ID accuracy "
        f"({fmt(an['target'])}).",
        "",
        "| LARGO OOD | LoRA OOD | LARGO - LoRA (paired) |",
        "|---|---|---|",
        f"| {fmt(la)} | {fmt(lo)} | {fmt(diff)} |",
        "",
        f"Verdict: {verdict}.",
        "",
        "Validation ID accuracy of every sweep trial:",
        "",
    ]
    for m, c in chosen.items():
        pairs = zip(SWEEP[m], c["val_id"], strict=True)
        trials = "; ".join(f"{short(t)}: {v:.3f}" for t, v in pairs)
        lines.append(f"- {m}: {trials}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("runs/bench-ood"))
    ap.add_argument("--results", type=Path, default=Path("demos/results"))
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--config", type=Path, default=DEMO, help="base config (demos/ood.yaml)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    base = load_config(args.config, [], pipeline.DEFAULTS)
    chosen = sweep(base, args, args.out)
    runs = test(base, chosen, args, args.out)
    an = analyse(runs)
    args.results.mkdir(parents=True, exist_ok=True)
    plot(an, args.results / "bench_ood_effective_robustness.png", args.steps)
    md = markdown(an, chosen, args)
    (args.results / "bench_ood.md").write_text(md)
    write_json(
        args.results / "bench_ood.json",
        {
            "settings": {k: str(v) for k, v in vars(args).items()},
            "chosen": chosen,
            "runs": runs,
            "table": an["table"],
            "matched": an["matched"],
            "line": None if an["line"] is None else vars(an["line"]),
            "config": yaml.safe_load(yaml.safe_dump(base)),
        },
    )
    print(md)


if __name__ == "__main__":
    main()
