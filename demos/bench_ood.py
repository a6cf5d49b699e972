"""Benchmark: linear probe, LoRA, full fine-tuning, LARGO and WiSE-FT at one step budget on
the generated shift task (tiny ViT pretrained on every style, fine-tuned on ID photos).

    .venv/bin/python demos/bench_ood.py --out runs/bench-ood [--steps 150] [--seeds 0 1]

Prints a table (ID, mean OOD, corruption accuracy, effective robustness against the line
fitted on the pretrained model, linear probe, LoRA and full fine-tuning), writes
bench_ood.json and id_vs_ood.png, and states whether LARGO's OOD accuracy beats LoRA's at
an ID accuracy within one point.
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path

import yaml

from lorakit.data.runs import deep_update, load_config, write_json
from lorakit.vision.ood import pipeline, plots
from lorakit.vision.ood.robustness import effective_robustness, fit_line

DEMO = Path(__file__).with_name("ood.yaml")
# per-method learning rates (each method's usual range); everything else is shared
METHODS = {
    "linear_probe": {"method": {"name": "linear_probe"}, "optim": {"lr": 0.01}},
    "lora": {"method": {"name": "lora", "r": 4, "alpha": 4}, "optim": {"lr": 0.003}},
    "full": {"method": {"name": "full"}, "optim": {"lr": 0.0005}},
    "largo": {"method": {"name": "largo", "r": 4, "alpha": 4}, "optim": {"lr": 0.003}},
}
WISE_ALPHA = 0.5


def run_method(base: dict, name: str, out: Path, steps: int, seed: int) -> dict:
    cfg = deep_update(base, METHODS[name])
    if name != "largo":  # the base config's largo-only fields (gamma_rel, mu) do not apply
        cfg["method"]["hyper"] = {}
    cfg["trainer"] = {
        **cfg["trainer"],
        "max_steps": steps,
        "seed": seed,
        "progress": False,
        "resume": False,
    }
    cfg["eval"] = {
        **cfg["eval"],
        "wise_alphas": [0.0, 0.25, 0.5, 0.75, 1.0] if name == "full" else [0.0],
    }
    return pipeline.train(cfg, out / f"{name}-s{seed}")


def summarise(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean over seeds of the headline numbers per method (and WiSE-FT of full FT)."""
    rows = {}
    for name, runs in results.items():
        rows[name] = {
            k: sum(r[k] for r in runs) / len(runs)
            for k in ("id_accuracy", "ood_accuracy", "corruption_accuracy")
        }
        if name == "full":
            pick = [next(w for w in r["wise"] if w["alpha"] == WISE_ALPHA) for r in runs]
            rows[f"wise_ft(full,{WISE_ALPHA})"] = {
                "id_accuracy": sum(p["id_accuracy"] for p in pick) / len(pick),
                "ood_accuracy": sum(p["ood_accuracy"] for p in pick) / len(pick),
                "corruption_accuracy": None,
            }
        pre = [r["wise"][0] for r in runs]
        rows.setdefault(
            "pretrained",
            {
                "id_accuracy": sum(p["id_accuracy"] for p in pre) / len(pre),
                "ood_accuracy": sum(p["ood_accuracy"] for p in pre) / len(pre),
                "corruption_accuracy": None,
            },
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("runs/bench-ood"))
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument(
        "--config", type=Path, default=DEMO, help="base config (default demos/ood.yaml)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = load_config(args.config, [], pipeline.DEFAULTS)
    base["eval"] = {**base["eval"], "severities": [1, 3, 5]}
    results = {
        m: [run_method(copy.deepcopy(base), m, args.out, args.steps, s) for s in args.seeds]
        for m in METHODS
    }
    rows = summarise(results)
    line = fit_line(
        [
            (rows[n]["id_accuracy"], rows[n]["ood_accuracy"])
            for n in ("pretrained", "linear_probe", "lora", "full")
        ]
    )
    for r in rows.values():
        r["effective_robustness"] = effective_robustness(line, r["id_accuracy"], r["ood_accuracy"])
    print(f"\nshift task, {args.steps} steps per method, seeds {args.seeds}")
    print(f"{'method':<22}{'ID':>8}{'OOD':>8}{'corrupt':>9}{'eff.rob':>9}")
    for name, r in rows.items():
        c = "-" if r["corruption_accuracy"] is None else f"{r['corruption_accuracy']:.3f}"
        print(
            f"{name:<22}{r['id_accuracy']:>8.3f}{r['ood_accuracy']:>8.3f}{c:>9}{r['effective_robustness']:>+9.3f}"
        )
    la, lo = rows["largo"], rows["lora"]
    within = abs(la["id_accuracy"] - lo["id_accuracy"]) <= 0.01
    beats = la["ood_accuracy"] > lo["ood_accuracy"]
    verdict = (
        f"LARGO OOD {la['ood_accuracy']:.3f} vs LoRA {lo['ood_accuracy']:.3f} "
        f"({'higher' if beats else 'not higher'}); ID {la['id_accuracy']:.3f} vs {lo['id_accuracy']:.3f} "
        f"({'within' if within else 'NOT within'} one point): goal {'met' if beats and within else 'not met'}"
    )
    print(verdict)
    curve = [(w["id_accuracy"], w["ood_accuracy"]) for w in results["full"][0]["wise"]]
    points = {n: (r["id_accuracy"], r["ood_accuracy"]) for n, r in rows.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    plots.id_vs_ood(
        points,
        args.out / "id_vs_ood.png",
        line,
        {"WiSE-FT (full)": curve},
        title=f"shift task, {args.steps} steps",
    )
    write_json(
        args.out / "bench_ood.json",
        {
            "steps": args.steps,
            "seeds": args.seeds,
            "rows": rows,
            "line": None if line is None else vars(line),
            "verdict": verdict,
            "config": yaml.safe_load(yaml.safe_dump(base)),
        },
    )
    print(f"wrote {args.out / 'bench_ood.json'} and {args.out / 'id_vs_ood.png'}")


if __name__ == "__main__":
    main()
