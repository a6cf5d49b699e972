"""Choose the child-speech recipe on the VALIDATION split (never on test or held-out).

    .venv/bin/python demos/recipe_asr.py --out runs/recipe_asr --steps 160 --every 20 --batch 4 \
        --patience 3 --only enc-sparse enc-mlp-sparse   # results: demos/results/recipe_asr.md
    .venv/bin/python demos/recipe_asr.py --only enc dec   # a subset (run subsets side by side)
    .venv/bin/python demos/recipe_asr.py --steps 160 --every 20 --batch 4 --patience 3 \
        --only enc-mlp-sparse enc-mlp-share-proj enc-mlp-share-block enc-mlp-prox0.1 \
        enc-mlp-prox2 enc-mlp-lamlr1 enc-mlp-lamlr30 enc-mlp-r4 enc-mlp-r16
        # third round: S2-LoRA's own knobs and its rank
    .venv/bin/python demos/recipe_asr.py --config demos/asr_base.yaml ...   # Whisper base

Each candidate (dotted overrides of the pipeline defaults: layers, lr, proximal step,
augmentation; plain LoRA candidates for the benchmark's baseline) trains on the generated
child-speech corpus (real Whisper tiny.en, the pipeline's data and augmentation) and decodes the validation split (greedy) before
training and every ``--every`` steps. Prints validation WER per step and candidate; writes
``recipe_<names>.json``. The test split and the held-out set are not read.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lorakit.core import inject
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
    trainer, _ = build_trainer(opts, RunFolder(out / name), [val], sampler=sampler)
    start = time.time()
    trainer.fit(WhisperAdapterModule(model, tcfg, cache_ok=ds.deterministic), loader)
    return {
        "trainable": report.trainable,
        "seconds": round(time.time() - start, 1),
        "history": val.history,
        "best_step": val.best_step,
        "best_wer": val.best,
        "kept_ranks": kept_ranks(model) if cfg["adapter"]["method"] == "s2_lora" else None,
    }


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
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, [], pipeline.DEFAULTS)
    # greedy validation, as the first two rounds were chosen (before the temperature fallback
    # existed; with it each validation costs several times more)
    cfg["eval"].update(batch_size=16, sample_len=48, fallback=False)
    rows = {}
    for name in args.only:
        rows[name] = run_candidate(name, cfg, args, args.out)
        print(name, json.dumps(rows[name]), flush=True)
    steps = sorted({s for r in rows.values() for s, _ in r["history"]})
    print(f"{'candidate':<12}{'params':>8}" + "".join(f"{'@' + str(s):>8}" for s in steps))
    for name, r in rows.items():
        wer = dict(r["history"])
        cells = "".join(f"{wer[s]:>8.3f}" if s in wer else f"{'-':>8}" for s in steps)
        print(f"{name:<12}{r['trainable']:>8}{cells}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"recipe_{'_'.join(args.only)}.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
