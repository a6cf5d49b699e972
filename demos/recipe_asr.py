"""Choose the child-speech recipe on the VALIDATION split (never on test or held-out).

    .venv/bin/python demos/recipe_asr.py --out runs/recipe_asr --steps 160 --every 20 --batch 4 \
        --patience 3 --only enc-sparse enc-mlp-sparse   # results: demos/results/recipe_asr.md
    .venv/bin/python demos/recipe_asr.py --only enc dec   # a subset (run subsets side by side)
    .venv/bin/python demos/recipe_asr.py --steps 160 --every 20 --batch 4 --patience 3 \
        --only enc-mlp-sparse enc-mlp-share-proj enc-mlp-share-block enc-mlp-prox0.1 \
        enc-mlp-prox2 enc-mlp-lamlr1 enc-mlp-lamlr30 enc-mlp-r4 enc-mlp-r16
        # third round: S2-LoRA's own knobs and its rank
    .venv/bin/python demos/recipe_asr.py --config demos/asr_base.yaml --steps 160 --every 20 \
        --batch 4 --patience 3 --only enc-mlp-sparse enc-mlp-sparse-lr5e-4 lora-enc-mlp-lr5e-4 \
        lora-enc-mlp-lr2e-3 --out runs/recipe_asr_base   # Whisper base: both methods' lr
    .venv/bin/python demos/recipe_asr.py --out runs/recipe_asr --every 20 --only NAMES... \
        --from demos/results/recipe_asr.json --report demos/results/recipe_asr_round3
        # train nothing: the table, json and plot of finished (or stopped) candidates

Each candidate (dotted overrides of the pipeline defaults: layers, lr, proximal step,
augmentation; plain LoRA candidates for the benchmark's baseline) trains on the generated
child-speech corpus (real Whisper tiny.en, the pipeline's data and augmentation) and decodes the validation split (greedy) before
training and every ``--every`` steps. Prints validation WER per step and candidate; writes
``recipe_<names>.json``. The test split and the held-out set are not read.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lorakit.core import inject
from lorakit.data import run_lock
from lorakit.data.audio import AugmentConfig
from lorakit.data.manifest import read_manifest
from lorakit.data.runs import RunFolder, TrainerOptions, build_trainer, dataclass_from, load_config
from lorakit.data.runtime import SeededItems, StepSampler
from lorakit.speech.whisper import pipeline
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.evaluate import kept_ranks
from lorakit.speech.whisper.features import SpeechDataset, make_collate
from lorakit.speech.whisper.train import TrainConfig, WhisperAdapterModule
from lorakit.speech.whisper.validate import ValidationWER

ENC, DEC = pipeline.ENCODER_ATTN, pipeline.DECODER_ATTN
ENC_MLP = r"encoder\.blocks\.\d+\.mlp\.(0|2)"
NO_AUG = {f"augment.{k}": 0.0 for k in ("pitch_p", "formant_p", "tempo_p", "speed_p", "specaug_p")}
PROJ = (r"\.query$", r"\.key$", r"\.value$", r"\.out$")  # S2-LoRA group tags (first match)
BLOCKS = tuple(rf"blocks\.{i}\." for i in range(32))  # covers every Whisper size's depth
SPARSE = {"adapter.prox_threshold": 0.5, "adapter.lam_lr_scale": 10.0}  # the proximal step on
LORA = {"adapter.method": "lora", "adapter.r": 8, "adapter.alpha": 16.0}
# the searches' validation decoding: greedy, as the first two rounds were chosen (before the
# temperature fallback existed; with it each validation costs several times more)
VALIDATION_DECODE = {"batch_size": 16, "sample_len": 48, "fallback": False}
# name: dotted overrides of the pipeline defaults (adapter.*, train.*, augment.*)
CANDIDATES = {
    "enc": {"adapter.targets": [ENC]},
    "dec": {"adapter.targets": [DEC]},
    "both": {"adapter.targets": [ENC, DEC]},
    "enc-lr5e-4": {"adapter.targets": [ENC], "optim.lr": 5e-4},
    "enc-lr5e-3": {"adapter.targets": [ENC], "optim.lr": 5e-3},
    "dec-lr5e-4": {"adapter.targets": [DEC], "optim.lr": 5e-4},
    "dec-lr5e-3": {"adapter.targets": [DEC], "optim.lr": 5e-3},
    "enc-noaug": {"adapter.targets": [ENC], **NO_AUG},
    "dec-noaug": {"adapter.targets": [DEC], **NO_AUG},
    # second round (longer runs; the proximal step scaled by the coefficients' lr)
    "enc-sparse": {"adapter.targets": [ENC], **SPARSE},
    "enc-sparse-lr5e-3": {"adapter.targets": [ENC], **SPARSE, "optim.lr": 5e-3},
    "enc-mlp-sparse": {"adapter.targets": [ENC, ENC_MLP], **SPARSE},
    "enc-mlp-sparse-lr5e-3": {"adapter.targets": [ENC, ENC_MLP], **SPARSE, "optim.lr": 5e-3},
    "enc-mlp-sparse-lr5e-4": {"adapter.targets": [ENC, ENC_MLP], **SPARSE, "optim.lr": 5e-4},
    "enc-dense": {"adapter.targets": [ENC], "adapter.prox_threshold": 0.0},
    # third round: S2-LoRA's own knobs on the chosen layers, each given the two values LoRA's
    # lr got (lora-enc-mlp-lr5e-4 / -lr2e-3); the default recipe is enc-mlp-sparse
    **{
        f"enc-mlp-{tag}": {"adapter.targets": [ENC, ENC_MLP], **SPARSE, **extra}
        for tag, extra in {
            # sharing groups: by default one pair per weight shape across the encoder
            "share-proj": {"adapter.group_patterns": list(PROJ)},  # + per projection type
            "share-block": {"adapter.group_patterns": list(BLOCKS)},  # + per block
            "prox0.1": {"adapter.prox_threshold": 0.1},
            "prox2": {"adapter.prox_threshold": 2.0},
            "lamlr1": {"adapter.lam_lr_scale": 1.0},
            "lamlr30": {"adapter.lam_lr_scale": 30.0},
            # and the rank (the "which layers, rank, ..."): r=8 is the recipe's
            "r4": {"adapter.r": 4},
            "r16": {"adapter.r": 16},
        }.items()
    },
    # plain LoRA on the same layers, its lr chosen the same way (for the benchmark)
    "lora-enc-lr5e-4": {**LORA, "adapter.targets": [ENC], "optim.lr": 5e-4},
    "lora-enc-lr2e-3": {**LORA, "adapter.targets": [ENC], "optim.lr": 2e-3},
    "lora-enc-mlp-lr5e-4": {**LORA, "adapter.targets": [ENC, ENC_MLP], "optim.lr": 5e-4},
    "lora-enc-mlp-lr2e-3": {**LORA, "adapter.targets": [ENC, ENC_MLP], "optim.lr": 2e-3},
}


def candidate_config(cfg: dict, name: str, batch: int) -> dict:
    """The pipeline defaults with the candidate's dotted overrides."""
    cfg = copy.deepcopy(cfg)
    cfg["optim"]["batch_size"] = batch
    for key, value in CANDIDATES[name].items():
        section, field = key.split(".")
        cfg[section][field] = value
    return cfg  # pipeline.adapter_config drops the S2-LoRA recipe fields for other methods


def run_candidate(name: str, cfg: dict, args, out: Path) -> dict:
    cfg = candidate_config(cfg, name, args.batch)
    data = pipeline.resolve_data(cfg)
    tcfg = dataclass_from(TrainConfig, cfg["optim"], "optim")
    aug = dataclass_from(AugmentConfig, cfg["augment"], "augment")
    model = load_whisper(cfg["backbone"]["name"])
    torch.manual_seed(args.seed)
    report = inject(model, pipeline.adapter_config(cfg))
    ds = SpeechDataset(read_manifest(data["train"]), model, "en", aug, seed=args.seed)
    sampler = StepSampler(len(ds), tcfg.batch_size, args.steps, args.seed)
    loader = DataLoader(
        SeededItems(ds),
        batch_sampler=sampler,
        collate_fn=make_collate(ds.prompt_len, ds.tokenizer.eot),
    )
    dcfg, _ = pipeline.decode_config(cfg)
    val_utts = read_manifest(data["val"])[: args.val_limit]
    val = ValidationWER(val_utts, dcfg, args.every, patience=args.patience)
    opts = TrainerOptions(
        max_steps=args.steps,
        log_every=5,
        checkpoint_every=10**6,
        progress=False,
        resume=False,
        seed=args.seed,
    )
    run = RunFolder(out / name)
    run_lock.acquire(run.path)  # one process per candidate folder (a one-line refusal)
    try:
        trainer, _ = build_trainer(opts, run, [val], sampler=sampler)
        start = time.time()
        trainer.fit(WhisperAdapterModule(model, tcfg, cache_ok=ds.deterministic), loader)
    finally:
        run_lock.release(run.path)
    return {
        "trainable": report.trainable,
        "seconds": round(time.time() - start, 1),
        "history": val.history,
        "best_step": val.best_step,
        "best_wer": val.best,
        "kept_ranks": kept_ranks(model) if cfg["adapter"]["method"] == "s2_lora" else None,
    }


def gathered(out: Path, sources: list[Path], names: list[str], every: int) -> dict:
    """``names``' results: from ``--out``'s ``recipe_*.json`` files and ``sources`` (a
    results json, ``{settings, candidates}``), else the validation WER a stopped run logged
    in ``<out>/<name>/logs/metrics.csv`` every ``every`` steps (marked ``stopped``)."""
    rows: dict = {}
    for path in [*sources, *sorted(out.glob("recipe_*.json"))]:
        data = json.loads(path.read_text())
        rows.update(data.get("candidates", data))
    for name in names:
        log = out / name / "logs" / "metrics.csv"
        if name in rows or not log.is_file():
            continue
        with log.open() as f:
            wer = {int(r["step"]) + 1: float(r["val_wer"]) for r in csv.DictReader(f)
                   if r.get("val_wer") and (int(r["step"]) + 1) % every == 0}  # fmt: skip
        if wer:
            best = min(wer, key=lambda k: (wer[k], k))
            rows[name] = {"history": sorted(wer.items()), "best_step": best,
                          "best_wer": wer[best], "stopped": max(wer), "trainable": None,
                          "kept_ranks": None}  # fmt: skip
    missing = [n for n in names if n not in rows]
    if missing:
        raise SystemExit(f"error: no results for {', '.join(missing)} in {out} or {sources}")
    return {n: rows[n] for n in names}


def report(rows: dict, prefix: Path, title: str) -> None:
    """``prefix``.md (validation WER per step, best step, kept ranks), .json and .png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r_default = pipeline.DEFAULTS["adapter"]["r"]
    steps = sorted({s for r in rows.values() for s, _ in r["history"]})
    lines = [
        f"| candidate | trainable | {' | '.join(f'@{s}' for s in steps)} | best (step) | "
        "kept ranks (best step's tensors) |",
        "|---|---|" + "---|" * len(steps) + "---|---|",
    ]
    for name, r in rows.items():
        wer = dict(r["history"])
        cells = " | ".join(f"{wer[s]:.3f}" if s in wer else "-" for s in steps)
        kept = r.get("kept_ranks")
        rank = CANDIDATES[name].get("adapter.r", r_default)
        kept_cell = f"{sum(kept.values())}/{rank * len(kept)}" if kept else "-"
        params = f"{r['trainable']:,}" if r.get("trainable") else "-"
        best = f"**{r['best_wer']:.3f}** ({r['best_step']})"
        if r.get("stopped"):
            best += f", stopped at {r['stopped']}"
        lines.append(f"| {name} | {params} | {cells} | {best} | {kept_cell} |")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".md").write_text(f"# {title}\n\n" + "\n".join(lines) + "\n")
    prefix.with_suffix(".json").write_text(json.dumps({"candidates": rows}, indent=2))
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name, r in rows.items():
        xs, ys = zip(*r["history"], strict=True)
        recipe = name == "enc-mlp-sparse"
        ax.plot(xs, ys, marker="o", ms=3, lw=2.6 if recipe else 1.2,
                ls="--" if name.startswith("lora") else "-", color="black" if recipe else None,
                label=name + (" (recipe)" if recipe else ""))  # fmt: skip
    ax.set_xlabel("training step")
    ax.set_ylabel("validation WER (greedy, espeak-ng)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(prefix.with_suffix(".png"), dpi=110)
    plt.close(fig)
    print("\n".join(lines))
    print(f"wrote {prefix}.md, .json and .png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/recipe_asr"))
    ap.add_argument(
        "--config", type=Path, default=None, help="start from this config (demos/asr_base.yaml)"
    )
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--val-limit", type=int, default=64, help="first N validation rows")
    ap.add_argument(
        "--patience", type=int, default=1000, help="early stop after N worse validations"
    )
    ap.add_argument("--only", nargs="*", choices=list(CANDIDATES), default=["enc", "dec", "both"])
    ap.add_argument("--report", type=Path, default=None, metavar="PREFIX",
                    help="train nothing: table (PREFIX.md), json and plot of --only's results")  # fmt: skip
    ap.add_argument("--from", dest="sources", type=Path, nargs="*", default=[],
                    help="with --report: results json files to read as well")  # fmt: skip
    ap.add_argument("--title", default="Child-speech recipe search (validation WER only)")
    args = ap.parse_args()
    if args.report:
        return report(gathered(args.out, args.sources, args.only, args.every), args.report, args.title)
    torch.set_num_threads(1)
    cfg = load_config(args.config, [], pipeline.DEFAULTS)
    cfg["eval"].update(VALIDATION_DECODE)
    for name in args.only:  # another search training a candidate here: refused before any starts
        if (pid := run_lock.holder(args.out / name)) is not None:
            raise SystemExit(f"error: {run_lock.in_use(args.out / name, pid)}")
    rows = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        try:
            rows[name] = run_candidate(name, cfg, args, args.out)
        except ValueError as e:  # its folder taken since the check above
            raise SystemExit(f"error: {e}") from None
        print(name, json.dumps(rows[name]), flush=True)
        # after each candidate: a killed search keeps what it finished (--report reads it)
        (args.out / f"recipe_{'_'.join(args.only)}.json").write_text(json.dumps(rows, indent=2))
    steps = sorted({s for r in rows.values() for s, _ in r["history"]})
    print(f"{'candidate':<12}{'params':>8}" + "".join(f"{'@' + str(s):>8}" for s in steps))
    for name, r in rows.items():
        wer = dict(r["history"])
        cells = "".join(f"{wer[s]:>8.3f}" if s in wer else f"{'-':>8}" for s in steps)
        print(f"{name:<12}{r['trainable']:>8}{cells}")


if __name__ == "__main__":
    main()
