"""Benchmark: the child-speech recipe's training on quantized Whisper tiny.en bases.

    .venv/bin/python demos/quant_asr_train.py --out demos/results --steps 20 --sentences 24
    .venv/bin/python demos/bench_quant.py --out demos/results --sentences 24 --train-asr 20 \
        --report-only   # the same, from bench_quant (without --report-only: then its rows too)

The committed results (demos/results/bench_quant_train.md) are the first command: 47
minutes on the shared 2-core CPU, a reduced budget (20 steps, not the recipe's 200).

Each row is one ``lorakit train asr`` run (``pipeline.train``: the shared runtime's
``run_training``, the same code as the command line) with the recipe of demos/asr.yaml —
its adapter layers (encoder attention + MLP), rank 8, alpha 16, augmentation, batch, warm-up
and seed — changing only the method and the base (``backbone.quantize``: all 64 block
Linears, NF, group 64): fp32 LoRA, 4-bit QLoRA / LoftQ / LQ-LoRA / QWHA (the same number
of trainable values: QWHA r * (d_in + d_out) coefficients per layer), 3- and 2-bit QLoRA.
Every row has the same step budget and the same lr: LoRA's lr chosen on validation WER
(demos/recipe_asr.py; ``bench_asr.LORA_LR``), not re-tuned per row. Validation-based early
stopping is off (no validation split is passed) so every row trains exactly ``--steps``
steps. Scored on the first ``--sentences`` sentences of the flite held-out set (adult and
child-like voice each, the subset demos/bench_quant.py decodes), plain greedy decoding
(``eval.fallback=false``, as the README's asr command): child / adult WER with 95 %
bootstrap intervals over sentences, the paired difference against fp32 LoRA (paired
bootstrap over sentences), seconds per training step and the process's peak resident
memory (each row in a fresh process, one after the other). Writes bench_quant_train.json,
bench_quant_train.md and bench_quant_train.png into --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_quant_report / bench_asr beside it
from bench_asr import LORA_LR  # noqa: E402
from bench_quant_report import KEYS, paired_delta  # noqa: E402

from lorakit.data.manifest import read_manifest, write_manifest  # noqa: E402
from lorakit.data.runs import load_config  # noqa: E402
from lorakit.data.worker_pool import worker_pool
from lorakit.speech.whisper import pipeline  # noqa: E402

QUANT_TARGETS = ["whisper-attn", "whisper-mlp"]  # every block Linear, as bench_quant
# name: (label, bits, method); bits None = the float32 base
ROWS = {
    "fp32-lora": ("fp32 LoRA", None, "lora"),
    "4bit-qlora": ("4-bit QLoRA", 4, "qlora"),
    "4bit-loftq": ("4-bit LoftQ init", 4, "loftq"),
    "4bit-lq_lora": ("4-bit LQ-LoRA", 4, "lq_lora"),
    "4bit-qwha": ("4-bit QWHA", 4, "qwha"),
    "3bit-qlora": ("3-bit QLoRA", 3, "qlora"),
    "2bit-qlora": ("2-bit QLoRA", 2, "qlora"),
}
REFERENCE = "fp32-lora"
ROW_KEYS = (
    *KEYS,
    *(f"{k}_ci" for k in KEYS),
    "seconds_per_step",
    "peak_rss_mb",
    "steps",
    "trainable_parameters",
    "quant_bits",
    "errors",
)


def base_config(args) -> dict:
    """``--config`` (demos/asr.yaml) + ``--set``, as ``lorakit train asr`` reads it."""
    return load_config(args.config, args.set, pipeline.DEFAULTS)


def row_config(name: str, args, data: dict) -> dict:
    """The recipe with row ``name``'s method and base; the shared budget and lr on top."""
    _, bits, method = ROWS[name]
    cfg = base_config(args)
    adapter = {"method": method, "r": cfg["adapter"]["r"], "targets": cfg["adapter"]["targets"]}
    if method != "qwha":  # QWHA's alpha is its own scale (default 1); r sets its coefficients
        adapter["alpha"] = cfg["adapter"]["alpha"]
    cfg["adapter"] = adapter
    cfg["optim"]["lr"] = args.lr
    if args.batch:
        cfg["optim"]["batch_size"] = args.batch
    cfg["backbone"]["quantize"] = (
        {"bits": bits, "group_size": 64, "targets": QUANT_TARGETS} if bits else {"bits": None}
    )
    cfg["data"].update({k: str(v) for k, v in data.items()})  # no val: no early stopping
    cfg["trainer"].update(max_steps=args.steps, progress=False, resume=False, seed=args.seed)
    cfg["eval"].update(fallback=False, baseline=False, sets=["heldout"])
    return cfg


def errors_of(run: Path) -> list[list]:
    """``[group, word errors, reference words]`` per utterance, from the run's utterances.csv."""
    with (run / "utterances.csv").open() as f:
        return [[r["group"], int(r["word_errors"]), int(r["ref_words"])] for r in csv.DictReader(f)]


def run_row(name: str, args, data: dict) -> dict:
    """Train and score one row (``lorakit train asr`` into ``<runs>/<name>``)."""
    torch.set_num_threads(1)
    label, bits, method = ROWS[name]
    run = Path(args.runs) / name
    start = time.time()
    metrics = pipeline.train(row_config(name, args, data), run)
    quant = metrics.get("quantized") or {}
    row = {
        "name": name,
        "label": label,
        "bits": bits,
        "method": method,
        "lr": args.lr,
        **{k: metrics[k] for k in (*KEYS, *(f"{k}_ci" for k in KEYS))},
        "seconds_per_step": metrics["seconds_per_step"],
        "peak_rss_mb": metrics["peak_rss_mb"],
        "steps": metrics["steps"],
        "trainable_parameters": metrics["trainable_parameters"],
        "quant_bits": quant.get("bits"),
        "quant": quant,
        "errors": errors_of(run),
        "seconds": round(time.time() - start, 1),
    }
    print(f"{label}: child {row[KEYS[0]]:.3f} adult {row[KEYS[1]]:.3f}, "
          f"{row['seconds_per_step']} s/step, {row['seconds']} s", flush=True)  # fmt: skip
    return row


def held_out_subset(cfg: dict, sentences: int, out: Path) -> dict:
    """The generated corpus (cached) and the first ``sentences`` sentences of the flite
    held-out set, both voices: ``{train, test, heldout}`` manifests for every row."""
    data = pipeline.resolve_data(cfg)
    held = read_manifest(data["heldout"])
    keep = {u.text for u in held[::2][:sentences]}
    subset = write_manifest(out / "heldout_subset.jsonl", [u for u in held if u.text in keep])
    return {"train": data["train"], "test": data["test"], "heldout": subset.resolve()}


def deltas(rows: list[dict]) -> None:
    """Each row's paired WER difference against fp32 LoRA, in place (``delta_<key>``)."""
    ref = next((r for r in rows if r["name"] == REFERENCE), None)
    for r in rows:
        for k in KEYS:
            if ref is not None and r is not ref:
                r[f"delta_{k}"] = list(paired_delta(r, ref, k.removeprefix("wer_")))


def pct(v: float, lo: float, hi: float, sign: str = "") -> str:
    return f"{100 * v:{sign}.1f} [{100 * lo:{sign}.1f}, {100 * hi:{sign}.1f}]"


def table(result: dict) -> str:
    rows = result["rows"]
    lines = [
        f"Whisper tiny.en (real weights) trained with the child-speech recipe (demos/asr.yaml: "
        f"encoder attention + MLP, r={result['rank']}, augmentation on, batch "
        f"{result['batch']}) on each base, **{result['steps']} steps** (reduced budget: the "
        f"recipe's is {result['recipe_steps']} with early stopping on validation WER; here no "
        f"validation, the same {result['steps']} steps for every row), lr {result['lr']:g} for "
        "every row (LoRA's lr chosen on validation WER, demos/recipe_asr.py; not re-tuned). "
        "Quantized: all 64 block Linears (NF, group 64). Held-out flite set: "
        f"{result['utterances']} utterances ({result['sentences']} sentences x adult / "
        "child-like), plain greedy decoding (eval.fallback=false); 95 % bootstrap intervals "
        "over sentences; vs fp32: paired bootstrap over sentences (WER points). One seed, 1 "
        "thread, each row in a fresh process on the shared 2-core CPU.",
        "",
        "| base + method | bits | child WER | adult WER | child vs fp32 LoRA | "
        "adult vs fp32 LoRA | step time (s) | peak RSS (MB) | trainable |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            pct(r[k], *r[f"{k}_ci"]).replace(" [", " % [") for k in KEYS
        ] + [pct(*r[f"delta_{k}"], "+") if f"delta_{k}" in r else "-" for k in KEYS]
        lines.append(
            f"| {r['label']} | {r['bits'] or 32} | {' | '.join(cells)} | "
            f"{r['seconds_per_step']} | {r['peak_rss_mb']} | {r['trainable_parameters']:,} |"
        )
    if result.get("untrained"):
        lines += ["", f"Untrained reference (demos/results/bench_quant.md): {result['untrained']}"]
    lines += [
        "",
        f"Whole run: {result['seconds'] / 60:.1f} minutes. Step time and peak RSS come from "
        "each run's metrics.json (train seconds / steps; the process's peak resident memory, "
        "decoding included); the rows ran one after the other on a machine other jobs shared "
        "(load average 4-6 on 2 cores), so step-time ratios between rows are rough.",
    ]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = range(len(rows))
    for i, (k, color, name) in enumerate(
        ((KEYS[0], "tab:orange", "child"), (KEYS[1], "tab:blue", "adult"))
    ):
        pos = [j + (i - 0.5) * 0.35 for j in x]
        val = [100 * r[k] for r in rows]
        err = [[100 * (r[k] - r[f"{k}_ci"][0]) for r in rows],
               [100 * (r[f"{k}_ci"][1] - r[k]) for r in rows]]  # fmt: skip
        ax.bar(pos, val, 0.35, yerr=err, capsize=3, color=color, label=f"held-out {name}")
    ax.set_xticks(list(x), [r["label"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("WER (%), 95 % bootstrap interval")
    ax.set_title(
        f"Whisper tiny.en after {result['steps']} recipe steps on quantized bases "
        f"(held-out flite, {result['utterances']} utterances)"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_quant_train.json").write_text(json.dumps(result, indent=2))
    text = table(result)
    (out / "bench_quant_train.md").write_text(text + "\n")
    plot(result, out / "bench_quant_train.png")
    print(text)
    print(f"wrote {out / 'bench_quant_train.json'}, .md and .png")


def untrained(out: Path) -> str:
    """bench_quant's no-training float32 row, when its json is in ``out``."""
    path = out / "bench_quant.json"
    if not path.is_file():
        return ""
    bench = json.loads(path.read_text())
    fp = bench["rows"][0]
    return (f"float32, no training, on its first {bench['sentences']} sentences: child "
            f"{100 * fp[KEYS[0]]:.1f} %, adult {100 * fp[KEYS[1]]:.1f} %")  # fmt: skip


def parser(ap: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = ap or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_quant"))
    ap.add_argument("--runs", type=Path, default=Path("runs/quant_asr_train"), help="run folders")
    ap.add_argument("--config", type=Path, default=Path("demos/asr.yaml"))
    ap.add_argument("--set", action="append", default=[], help="dotted override, as lorakit's")
    ap.add_argument("--steps", type=int, default=20, help="training steps of every row")
    ap.add_argument("--batch", type=int, default=0, help="0: the recipe's batch")
    ap.add_argument("--lr", type=float, default=LORA_LR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sentences", type=int, default=24, help="held-out sentences (x 2 voices)")
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    ap.add_argument("--report-only", action="store_true", help="rewrite from --out's json")
    return ap


def main(args: argparse.Namespace | None = None) -> dict:
    args = args or parser().parse_args()
    if args.report_only:
        result = json.loads((args.out / "bench_quant_train.json").read_text())
        result["untrained"] = untrained(args.out)
        report(result, args.out)
        return result
    start = time.time()
    cfg = base_config(args)
    data = held_out_subset(cfg, args.sentences, Path(args.runs))
    rows = []
    for name in args.rows:  # one after the other, each in a fresh process (its peak RSS)
        with worker_pool(1) as pool:
            rows.append(pool.submit(run_row, name, args, data).result())
    deltas(rows)
    result = {
        "rows": rows,
        "steps": args.steps,
        "recipe_steps": cfg["trainer"]["max_steps"],
        "batch": args.batch or cfg["optim"]["batch_size"],
        "rank": cfg["adapter"]["r"],
        "lr": args.lr,
        "sentences": args.sentences,
        "utterances": len(read_manifest(data["heldout"])),
        "untrained": untrained(args.out),
        "seconds": round(time.time() - start),
    }
    report(result, args.out)
    return result


if __name__ == "__main__":
    main()
