"""Benchmark: box-supervised COD with the tiny SAM, over seeds, tuned on a validation split.

Methods (every one prompted with the object's box, trained with the box as its only label):

    sam_zero_shot        the pretrained tiny SAM, no training
    lora_box             LoRA on the same layers, box supervision
    fora_box             FoRA (+ frequency fusion), box supervision
    fora_box_selftrain   FoRA, box supervision for half the steps, then 2 rounds of
                         teacher pseudo-labels (a quarter of the steps each): same total steps
    student_distilled    a prompt-free LR-ASPP/MobileNetV3-Small (random init) trained on the
                         pseudo-labels of fora_box_selftrain's final teacher

Protocol: the tiny SAM is pretrained once on obvious generated objects (the stand-in for
SAM's own pretraining). Sweep: each trained method gets the same 2 learning rates on data
seed 0, scored by S-measure on a VALIDATION folder (its own generated scenes); the test
folders are never read in the sweep. Test: the chosen lr over ``--seeds`` (new training
and test scenes and a new initialisation per seed); S-measure, mean E-measure, weighted F
and MAE, mean ± 95 % t-interval; paired differences against LoRA and zero-shot.

    .venv/bin/python demos/bench_cod.py --out runs/bench-cod --results demos/results

Writes ``<results>/bench_cod.md``, ``bench_cod.json`` and ``bench_cod.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from lorakit.data.camouflage import CamouflageSpec, ensure_cod  # noqa: E402
from lorakit.data.intervals import fmt, mean_ci, paired_diff  # noqa: E402
from lorakit.data.runs import load_config, write_json  # noqa: E402
from lorakit.vision.sam import pipeline  # noqa: E402

KEYS = ("s_measure", "e_measure_mean", "weighted_f", "mae")
LRS = (3e-3, 1e-2)
BOX = ["prompts.labels=box", "prompts.mode=box"]


def methods(steps: int) -> dict[str, list[str]]:
    half, quarter = steps // 2, steps // 4
    return {
        "sam_zero_shot": ["adapter.method=none"],
        "lora_box": ["adapter.method=lora", f"trainer.max_steps={steps}"],
        "fora_box": ["adapter.method=fora", f"trainer.max_steps={steps}"],
        "fora_box_selftrain": [
            "adapter.method=fora",
            f"trainer.max_steps={half}",
            "selftrain.rounds=2",
            f"selftrain.steps={quarter}",
        ],
    }


def scenes(cache: Path, name: str, n: int, seed: int, args) -> str:
    spec = CamouflageSpec(n=n, size=args.size, difficulty=args.difficulty, seed=seed)
    return str(ensure_cod(cache / name, spec))


def run(
    name: str, sets: list[str], train: str, tests: dict, out: Path, args, seed: int, distil=False
):
    base = [
        f"data.cache={args.out / 'cache'}",
        f"backbone.pretrain_steps={args.pretrain}",
        f"backbone.cache={args.out / 'cache'}",
        "backbone.pretrain_cue=texture",  # what this benchmark was run with
        "trainer.progress=false",
        "eval.progress=false",
        "eval.zero_shot=false",
        "trainer.checkpoint_every=100000",
        "trainer.resume=false",
        f"trainer.seed={seed}",
        *BOX,
        *sets,
    ]
    if distil:
        base += [
            "distill.enabled=true",
            "distill.arch=lraspp_mobilenet_v3_small",
            f"distill.size={args.size}",
            f"distill.steps={args.distill_steps}",
            f"distill.seed={seed}",
        ]
    cfg = load_config(None, base, pipeline.DEFAULTS)
    cfg["data"]["train"], cfg["data"]["test"] = train, tests
    return pipeline.train(cfg, out)


def sweep(args) -> dict:
    cache = args.out / "cache"
    train = scenes(cache, "train-s0", args.n_train, 1, args)
    val = {"val": scenes(cache, "val", args.n_test, 424_242, args)}
    chosen = {}
    for name, sets in methods(args.steps).items():
        if name == "sam_zero_shot":
            continue
        scores = []
        for lr in LRS:
            m = run(
                name,
                [*sets, f"optim.lr={lr}"],
                train,
                val,
                args.out / "sweep" / f"{name}-lr{lr:g}",
                args,
                0,
            )
            scores.append(m["s_measure"])
            print(f"sweep {name} lr={lr:g}: validation S {m['s_measure']:.3f}", flush=True)
        chosen[name] = {"lr": LRS[max(range(len(LRS)), key=lambda i: scores[i])], "val_s": scores}
    return chosen


def test(chosen: dict, args) -> dict:
    cache, rows = args.out / "cache", {}
    for seed in args.seeds:
        train = scenes(cache, f"train-s{seed}", args.n_train, 1000 * seed + 1, args)
        tests = {"test": scenes(cache, f"test-s{seed}", args.n_test, 1000 * seed + 5003, args)}
        for name, sets in methods(args.steps).items():
            extra = [f"optim.lr={chosen[name]['lr']}"] if name in chosen else []
            out = args.out / "test" / f"{name}-s{seed}"
            m = run(
                name, sets + extra, train, tests, out, args, seed, distil=name.endswith("selftrain")
            )
            rows.setdefault(name, []).append({k: m[k] for k in KEYS})
            if "distilled" in m:
                rows.setdefault("student_distilled", []).append(
                    {k: m["distilled"][k] for k in KEYS}
                )
            if "selftrain" in m:
                rows.setdefault("_pseudo", []).append(m["selftrain"])
            print(f"seed {seed} {name}: S {m['s_measure']:.3f} MAE {m['mae']:.3f}", flush=True)
    return rows


def col(rows: dict, name: str, key: str) -> list[float]:
    return [r[key] for r in rows[name]]


def markdown(rows: dict, chosen: dict, args) -> str:
    lines = [
        f"# COD benchmark: box supervision, tiny SAM, generated camouflage ({len(args.seeds)} seeds)",
        "",
        f"Difficulty {args.difficulty}, {args.n_train} training / {args.n_test} test scenes of "
        f"{args.size} px per seed, {args.steps} optimizer steps per trained method (self-training: "
        f"{args.steps // 2} + 2 x {args.steps // 4}). lr chosen per method from "
        f"{', '.join(f'{v:g}' for v in LRS)} by validation S-measure (seed 0, own validation "
        "scenes). Mean ± 95 % t-interval over seeds.",
        "",
        "| method | lr | S-measure ↑ | E-measure (mean) ↑ | weighted F ↑ | MAE ↓ |",
        "|---|---|---|---|---|---|",
    ]
    names = [n for n in rows if not n.startswith("_")]
    for name in names:
        lr = f"{chosen[name]['lr']:g}" if name in chosen else "-"
        cells = " | ".join(fmt(col(rows, name, k)) for k in KEYS)
        lines.append(f"| {name} | {lr} | {cells} |")
    lines += ["", "Paired differences (same seed), S-measure and MAE:", ""]
    lines += ["| comparison | ΔS | ΔMAE | verdict (S) |", "|---|---|---|---|"]
    pairs = [
        ("fora_box", "sam_zero_shot"),
        ("lora_box", "sam_zero_shot"),
        ("fora_box", "lora_box"),
        ("fora_box_selftrain", "fora_box"),
        ("student_distilled", "fora_box_selftrain"),
    ]
    for a, b in pairs:
        if a not in rows or b not in rows:
            continue
        ds = paired_diff(col(rows, a, "s_measure"), col(rows, b, "s_measure"))
        dm = paired_diff(col(rows, a, "mae"), col(rows, b, "mae"))
        m, h = mean_ci(ds)
        verdict = (
            "no significant difference"
            if not h == h or abs(m) <= h
            else (f"{a} higher" if m > 0 else f"{b} higher")
        )
        lines.append(f"| {a} - {b} | {fmt(ds)} | {fmt(dm)} | {verdict} |")
    if "_pseudo" in rows:
        lines += [
            "",
            "Pseudo-label quality on the training scenes (diagnostic; GT never used to train):",
            "",
        ]
        lines += [
            "| round | labelled fraction | label accuracy | foreground IoU |",
            "|---|---|---|---|",
        ]
        for r in range(len(rows["_pseudo"][0])):
            q = [seed[r].get("pseudo_labels", {}) for seed in rows["_pseudo"]]
            cells = " | ".join(
                fmt([x[k] for x in q])
                for k in ("labelled_fraction", "label_accuracy", "foreground_iou")
            )
            lines.append(f"| {r + 1} | {cells} |")
    lines += ["", "Validation S-measure of each sweep trial:", ""]
    for name, c in chosen.items():
        lines.append(
            f"- {name}: "
            + ", ".join(f"lr={lr:g}: {s:.3f}" for lr, s in zip(LRS, c["val_s"], strict=True))
        )
    return "\n".join(lines) + "\n"


def plot(rows: dict, png: Path, args) -> None:
    names = [n for n in rows if not n.startswith("_")]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.9))
    titles = (
        "S-measure (higher is better)",
        "E-measure mean (higher)",
        "weighted F (higher)",
        "MAE (lower is better)",
    )
    for ax, key, title in zip(axes, KEYS, titles, strict=True):
        stats = [mean_ci(col(rows, n, key)) for n in names]
        ax.bar(
            range(len(names)),
            [s[0] for s in stats],
            yerr=[s[1] for s in stats],
            capsize=3,
            color=["#999999"] + ["#4C72B0"] * (len(names) - 1),
            label="mean ± 95 % CI",
        )
        for i, n in enumerate(names):
            ax.scatter(
                [i] * len(rows[n]),
                col(rows, n, key),
                s=8,
                color="k",
                zorder=3,
                label="seeds" if i == 0 else None,
            )
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(key)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"Box-supervised COD, tiny SAM, difficulty {args.difficulty}, {len(args.seeds)} seeds"
    )
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("runs/bench-cod"))
    ap.add_argument("--results", type=Path, default=Path("demos/results"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--pretrain", type=int, default=150)
    ap.add_argument("--n-train", type=int, default=24)
    ap.add_argument("--n-test", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--difficulty", type=float, default=0.5)
    ap.add_argument("--distill-steps", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    torch.set_num_threads(1)
    chosen = sweep(args)
    rows = test(chosen, args)
    args.results.mkdir(parents=True, exist_ok=True)
    md = markdown(rows, chosen, args)
    (args.results / "bench_cod.md").write_text(md)
    plot(rows, args.results / "bench_cod.png", args)
    write_json(
        args.results / "bench_cod.json",
        {"settings": {k: str(v) for k, v in vars(args).items()}, "chosen": chosen, "rows": rows},
    )
    print(md)


if __name__ == "__main__":
    main()
