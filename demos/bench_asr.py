"""Benchmark: S2-LoRA vs LoRA adapting real Whisper tiny.en to child-like speech, scored on
the project's held-out set (flite: no sentence, voice or engine shared with training).

    .venv/bin/python demos/bench_asr.py --out runs/bench_asr [--steps 200]
    .venv/bin/python demos/bench_asr.py --config demos/asr_base.yaml --out runs/bench_asr_base \
        --steps 40 --no-ct2 --set data.generate.val_sentences=16   # Whisper base, shorter

One run, the recipe of ``lorakit train asr`` (pipeline DEFAULTS + demos/asr.yaml, chosen on
the validation split) for both methods at the same budget (LoRA r=8 on the same layers, its
lr chosen on validation too): held-out child / adult WER with 95 % bootstrap intervals over
sentences for the base model and each method, trainable parameters, S2-LoRA's kept ranks,
the issue's goals (pass / miss), and the S2-LoRA model exported to CTranslate2 against the
merged openai-whisper model, side by side: identical transcripts and speed ratio for float32
(per file and in batches of 8) and int8. Writes bench_asr.json, bench_asr.md (table) and
bench_asr.png into --out; about 40 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lorakit.core import load_adapter  # noqa: E402
from lorakit.data import run_lock
from lorakit.data.manifest import read_manifest  # noqa: E402
from lorakit.data.runs import load_config  # noqa: E402
from lorakit.data.worker_pool import worker_pool
from lorakit.speech.whisper import pipeline  # noqa: E402
from lorakit.speech.whisper.build import load_whisper  # noqa: E402
from lorakit.speech.whisper.ct2_run import compare_ct2  # noqa: E402
from lorakit.speech.whisper.evaluate import score, summarize  # noqa: E402
from lorakit.speech.whisper.export import export_run  # noqa: E402
from lorakit.speech.whisper.transcribe import load_mels  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # asr_seeds beside it
import asr_seeds  # noqa: E402

LORA = {"method": "lora", "r": 8, "alpha": 16.0}
# LoRA's lr, chosen like S2-LoRA's on validation WER (demos/recipe_asr.py, candidates
# lora-enc-mlp-lr5e-4 / lora-enc-mlp-lr2e-3, same targets, steps and batch)
LORA_LR = 5e-4
KEYS = ("wer_heldout_child", "wer_heldout_adult")


def bench_config(name: str, args) -> dict:
    """``--config`` (+ ``--set`` overrides) for ``name``: the S2-LoRA recipe, or plain LoRA
    on the same targets at ``LORA_LR``; ``--steps`` and ``--seed`` on top."""
    cfg = load_config(args.config, args.set, pipeline.DEFAULTS)
    if name == "lora":  # same targets, budget and recipe; plain LoRA pairs
        cfg["adapter"] = {**LORA, "targets": cfg["adapter"]["targets"]}
        cfg["optim"]["lr"] = LORA_LR
    if args.steps:
        cfg["trainer"]["max_steps"] = args.steps
    cfg["trainer"].update(progress=False, resume=False, seed=args.seed)
    return cfg


def run_method(name: str, args, baseline: bool) -> dict:
    torch.set_num_threads(1)
    cfg = bench_config(name, args)
    cfg["eval"].update(baseline=baseline, sets=["heldout"])
    return pipeline.train(cfg, args.out / name)


def cell(m: dict, key: str) -> str:
    lo, hi = m[f"{key}_ci"]
    return f"{100 * m[key]:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def goals(base: dict, s2: dict, lora: dict) -> dict:
    child, adult = "wer_heldout_child", "wer_heldout_adult"
    return {
        "child WER at least a third lower than base": s2[child] <= base[child] * 2 / 3,
        "adult WER no worse than base": s2[adult] <= base[adult],
        "within 1 point of LoRA's child WER": s2[child] <= lora[child] + 0.01,
        "at most a tenth of LoRA's parameters": s2["trainable_parameters"]
        <= lora["trainable_parameters"] / 10,
    }


# (compute type, utterances per call): float32 must give identical text; per-file calls
# are how ``transcribe`` is used, batches of 8 how the pipeline decodes; int8 for scale
CT2_SETTINGS = (("float32", 1), ("float32", 8), ("int8_float32", 1))


def ct2_check(args) -> list[dict]:
    """Export the S2-LoRA run (merged .pt + float32 CTranslate2) and compare on held-out,
    side by side with the merged openai-whisper model, for each of ``CT2_SETTINGS``."""
    cfg = load_config(args.out / "s2_lora" / "config.yaml", [], pipeline.DEFAULTS)
    model = load_whisper(cfg["backbone"]["name"])
    load_adapter(model, args.out / "s2_lora" / "adapter")
    written = export_run(model, args.out / "s2_lora" / "export")
    merged = load_whisper(str(written["pt"]))
    utts = read_manifest(pipeline.resolve_data(cfg)["heldout"])[: args.ct2_files or None]
    dcfg, _ = pipeline.decode_config(cfg)
    mels = load_mels(merged, [u.audio for u in utts], dcfg)
    rows = []
    for compute_type, batch in CT2_SETTINGS:
        c = dataclasses.replace(dcfg, batch_size=batch)
        out = compare_ct2(merged, written["ct2"], [], c, compute_type, mels=mels)
        wer = summarize(score(utts, out["ctranslate2"], dcfg.language))["wer"]
        rows.append(
            {
                **{k: v for k, v in out.items() if k not in ("openai_whisper", "ctranslate2")},
                "ct2_wer_heldout": round(wer, 4),
            }
        )
        print(f"ct2 {compute_type} batch {batch}: {rows[-1]}", flush=True)
    return rows


def table(base: dict, rows: dict, checks: dict, ct2: dict | None, model: str = "tiny.en") -> str:
    lines = [
        "| model | trainable | held-out child WER [95 % CI] | held-out adult WER [95 % CI] |",
        "|---|---|---|---|",
        f"| {model}, no adapter | 0 | "
        + " | ".join(
            cell({k.removeprefix("baseline_"): v for k, v in base.items()}, k) for k in KEYS
        )
        + " |",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['trainable_parameters']:,} | {cell(r, KEYS[0])} | {cell(r, KEYS[1])} |"
        )
    ranks = rows.get("s2_lora", {}).get("s2_lora_ranks")
    if ranks:
        total = pipeline.DEFAULTS["adapter"]["r"] * len(ranks)
        lines += [
            "",
            f"- S2-LoRA kept {sum(ranks.values())} of {total} rank coefficients "
            "after its proximal steps (per layer: s2_lora/plots/s2_lora_lambda.png)",
        ]
    lines += ["", *(f"- {k}: {'pass' if v else 'MISS'}" for k, v in checks.items())]
    if ct2:
        lines += ["", *ct2_lines(ct2)]
    return "\n".join(lines)


def ct2_lines(ct2: list[dict], run: str = "") -> list[str]:
    """The CTranslate2 table (rows of ``ct2_check``)."""
    return [
        f"CTranslate2 export{run} vs merged openai-whisper (greedy, same log-mels, side by "
        f"side, {ct2[0]['threads']} thread):",
        "",
        "| CTranslate2 compute type | utterances per call | identical transcripts "
        "| held-out WER (CT2) | speed-up |",
        "|---|---|---|---|---|",
        *(
            f"| {r['compute_type']} | {r['batch_size']} | {r['identical']}/{r['n']} | "
            f"{100 * r['ct2_wer_heldout']:.1f} % | {r['speedup']}x |"
            for r in ct2
        ),
    ]


def plot(base: dict, rows: dict, path: Path, model: str = "tiny.en") -> None:
    labels = ["base", *rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for j, (key, label) in enumerate(zip(KEYS, ("child-like", "adult"), strict=True)):
        ms = [{k.removeprefix("baseline_"): v for k, v in base.items()}, *rows.values()]
        vals = [m[key] for m in ms]
        err = [
            [v - m[f"{key}_ci"][0] for v, m in zip(vals, ms, strict=True)],
            [m[f"{key}_ci"][1] - v for v, m in zip(vals, ms, strict=True)],
        ]
        ax.bar([x + 0.4 * j - 0.2 for x in range(len(labels))], vals, 0.4, yerr=err, label=label)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(f"model (Whisper {model}; adapters trained on espeak-ng speech)")
    ax.set_ylabel("held-out WER (95 % CI)")
    ax.set_title("Held-out set (flite: other engine, voices, sentences)", fontsize=10)
    ax.legend(title="held-out group")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# keys a run of the same recipe may differ in: where it writes, how it logs, what it scores
SAME_RECIPE_IGNORES = {
    ("data", "generate", "dir"),
    ("data", "generate", "heldout_dir"),
    ("trainer", "progress"),
    ("trainer", "resume"),
    ("trainer", "log_every"),
    ("trainer", "checkpoint_every"),
    ("eval", "sets"),
    ("eval", "baseline"),
}


def recipe_differences(saved: dict, want: dict, at: tuple = ()) -> list[str]:
    """Dotted keys where a finished run's config differs from the benchmark's, ignoring
    ``SAME_RECIPE_IGNORES`` (a run kept from elsewhere, e.g. the hub's pre-made run, counts
    as a seed only when it trained the same recipe)."""
    out = []
    for key in sorted(set(saved) | set(want)):
        path = (*at, key)
        if path in SAME_RECIPE_IGNORES:
            continue
        a, b = saved.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += recipe_differences(a, b, path)
        elif a != b:
            out.append(f"{'.'.join(path)}: {a!r} (run) vs {b!r} (benchmark)")
    return out


def seed_run(name: str, seed: int, args, baseline: bool) -> dict:
    """One method at one seed into ``out/seed<seed>/<name>`` (resumes a killed run)."""
    torch.set_num_threads(1)
    a = argparse.Namespace(**{**vars(args), "seed": seed})
    cfg = bench_config(name, a)
    cfg["trainer"]["resume"] = True
    cfg["eval"].update(baseline=baseline, sets=["heldout"])
    return pipeline.train(cfg, args.out / f"seed{seed}" / name)


def base_scores(out: Path) -> Path | None:
    """The base model's held-out scores, from whichever seed's S2-LoRA run scored them
    (greedy decoding of the unadapted model: the same at every seed)."""
    found = sorted(out.glob("seed*/s2_lora/baseline_utterances.csv"))
    return found[0] if found else None


def seeds_main(args) -> None:
    """``--seeds``: every (seed, method) run not finished yet, two at a time, then the pooled
    table over seeds. A finished run is kept when it trained the same recipe. Run one batch
    per ``--out`` at a time: a second batch reaching a run the first is training is refused
    (each run folder is locked by the process training in it)."""
    todo = []
    for seed in args.seeds:
        for name in args.methods:
            folder = args.out / f"seed{seed}" / name
            if (folder / "metrics.json").is_file():
                a = argparse.Namespace(**{**vars(args), "seed": seed})
                diff = recipe_differences(
                    load_config(folder / "config.yaml"), bench_config(name, a)
                )
                if diff:
                    raise SystemExit(f"{folder}: not the benchmark's recipe: {diff[0]}")
                continue
            if (pid := run_lock.holder(folder)) is not None:  # refused before anything starts
                raise SystemExit(f"error: {run_lock.in_use(folder, pid)}")
            todo.append((name, seed))
    base_job = None if base_scores(args.out) else next((j for j in todo if j[0] == "s2_lora"), None)
    if todo:
        pipeline.resolve_data(bench_config(todo[0][0], args))  # generated once, first
        with worker_pool(2) as pool:
            for f in [pool.submit(seed_run, n, s, args, (n, s) == base_job) for n, s in todo]:
                try:
                    f.result()
                except ValueError as e:  # a refused run (e.g. its folder in use): one line
                    raise SystemExit(f"error: {e}") from None
    report_seeds(args)


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (results carry no home folders)."""
    full, root = Path(path).resolve(), Path(__file__).resolve().parents[1]
    return str(full.relative_to(root)) if full.is_relative_to(root) else str(path)


def result_head(args) -> dict:
    """What every bench_asr.json starts with: the model, the config and the budget."""
    model = load_config(args.config, args.set, pipeline.DEFAULTS)["backbone"]["name"]
    return {
        "model": model.removesuffix("-ct2"),
        "config": shown_path(args.config),
        "overrides": args.set,
        "max_steps": bench_config("s2_lora", args)["trainer"]["max_steps"],
    }


def write_results(out: Path, result: dict, text: str, plot_to) -> None:
    """bench_asr.json, bench_asr.md and (``plot_to(path)``) bench_asr.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_asr.json").write_text(json.dumps(result, indent=2))
    (out / "bench_asr.md").write_text(text + "\n")
    plot_to(out / "bench_asr.png")
    print(f"wrote {out / 'bench_asr.json'}, bench_asr.md and bench_asr.png")


def report_seeds(args) -> None:
    scores, metrics = {}, {}
    for name in args.methods:
        for seed in args.seeds:
            folder = args.out / f"seed{seed}" / name
            if not (folder / "metrics.json").is_file():
                raise SystemExit(f"{folder}: not finished (no metrics.json); run without --report")
            scores.setdefault(name, {})[seed] = asr_seeds.read_scores(folder / "utterances.csv")
            metrics.setdefault(name, []).append(json.loads((folder / "metrics.json").read_text()))
    base = base_scores(args.out)
    if base is None:
        raise SystemExit("no baseline_utterances.csv: no S2-LoRA run scored the base model")
    scores["base"] = {0: asr_seeds.read_scores(base)}
    scores = {"base": scores.pop("base"), **scores}
    summary = asr_seeds.summary(scores, metrics)
    checks = asr_seeds.goals(summary)
    head = result_head(args)
    text = asr_seeds.table(summary, checks, head["model"], args.set)
    result = {**head, "seeds": args.seeds, **summary, "goals": checks}
    if not args.no_ct2:  # the export of the first seed's S2-LoRA run
        first = f"seed{args.seeds[0]}"
        result["ct2"] = ct2_check(argparse.Namespace(out=args.out / first, ct2_files=args.ct2_files))
        text += "\n\n" + "\n".join(ct2_lines(result["ct2"], f" of {first}/s2_lora"))
    print(text)
    write_results(
        args.out, result, text, lambda p: asr_seeds.plot(summary, p, head["model"], args.set)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_asr"))
    ap.add_argument("--config", type=Path, default=Path(__file__).with_name("asr.yaml"))
    ap.add_argument("--set", nargs="*", default=[], help="dotted overrides key=value (both runs)")
    ap.add_argument("--steps", type=int, default=0, help="0: the recipe's max_steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--seeds", type=int, nargs="+", help="several seeds: out/seed<N>/<method>, pooled table"
    )
    ap.add_argument(
        "--methods", nargs="+", default=["s2_lora", "lora"], choices=["s2_lora", "lora"]
    )
    ap.add_argument("--report", action="store_true", help="with --seeds: only the table")
    ap.add_argument("--no-ct2", action="store_true", help="skip the CTranslate2 comparison")
    ap.add_argument("--ct2-files", type=int, default=0, help="first N held-out files (0: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.seeds:
        args.out.mkdir(parents=True, exist_ok=True)
        return report_seeds(args) if args.report else seeds_main(args)
    names = ("s2_lora", "lora")
    pipeline.resolve_data(bench_config("s2_lora", args))  # generated once, before the workers
    # both methods train side by side (one process each, one thread each)
    with worker_pool(2) as pool:
        futures = {n: pool.submit(run_method, n, args, n == "s2_lora") for n in names}
        rows = {n: futures[n].result() for n in names}
    base = {k: v for k, v in rows["s2_lora"].items() if k.startswith("baseline_")}
    checks = goals({k.removeprefix("baseline_"): v for k, v in base.items()}, *rows.values())
    ct2 = None if args.no_ct2 else ct2_check(args)
    if ct2:
        f32 = [r for r in ct2 if r["compute_type"] == "float32"]
        checks["CTranslate2 float32 export: identical transcripts"] = all(
            r["identical"] == r["n"] for r in f32
        )
        checks["CTranslate2 float32 export: at least 2x faster"] = (
            max(r["speedup"] for r in f32) >= 2.0
        )
    head = result_head(args)
    text = table(base, rows, checks, ct2, head["model"])
    print(text)
    keep = (
        "trainable_parameters",
        "train_steps",
        "best_val_step",
        "val_wer",
        "seconds_per_step",
        "val_history",
        "s2_lora_ranks",
        *KEYS,
        *(f"{k}_ci" for k in KEYS),
    )
    result = {
        **head,
        "seed": args.seed,
        "base": base,
        "methods": {n: {k: r[k] for k in keep if k in r} for n, r in rows.items()},
        "goals": checks,
        "ct2": ct2,
    }
    write_results(args.out, result, text, lambda p: plot(base, rows, p, head["model"]))


if __name__ == "__main__":
    main()
