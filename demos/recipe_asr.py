"""Choose the child-speech recipe on the VALIDATION split (never on test or held-out).

    .venv/bin/python demos/recipe_asr.py --out runs/recipe_asr --steps 40 --every 10
    .venv/bin/python demos/recipe_asr.py --only enc dec   # a subset (run subsets side by side)

Each candidate trains S2-LoRA on the generated child-speech corpus (real Whisper tiny.en,
the pipeline's data and augmentation) and decodes the validation split (greedy) before
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
from lorakit.speech.whisper import pipeline
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.features import SpeechDataset, make_collate
from lorakit.speech.whisper.train import TrainConfig, WhisperAdapterModule
from lorakit.speech.whisper.validate import ValidationWER

ENC, DEC = pipeline.ENCODER_ATTN, pipeline.DECODER_ATTN
NO_AUG = {k: 0.0 for k in ("pitch_p", "formant_p", "tempo_p", "speed_p", "specaug_p")}
CANDIDATES = {  # name: (adapter overrides, train overrides, augment overrides)
    "enc": ({"targets": [ENC]}, {}, {}),
    "dec": ({"targets": [DEC]}, {}, {}),
    "both": ({"targets": [ENC, DEC]}, {}, {}),
    "enc-lr5e-4": ({"targets": [ENC]}, {"lr": 5e-4}, {}),
    "enc-lr5e-3": ({"targets": [ENC]}, {"lr": 5e-3}, {}),
    "dec-lr5e-4": ({"targets": [DEC]}, {"lr": 5e-4}, {}),
    "dec-lr5e-3": ({"targets": [DEC]}, {"lr": 5e-3}, {}),
    "enc-noaug": ({"targets": [ENC]}, {}, NO_AUG),
    "dec-noaug": ({"targets": [DEC]}, {}, NO_AUG),
}


def run_candidate(name: str, cfg: dict, args, out: Path) -> dict:
    adapter, train, augment = CANDIDATES[name]
    cfg = copy.deepcopy(cfg)
    cfg["adapter"].update(adapter)
    cfg["train"].update({"batch_size": args.batch, **train})
    cfg["augment"].update(augment)
    data = pipeline.resolve_data(cfg)
    tcfg = dataclass_from(TrainConfig, cfg["train"], "train")
    aug = dataclass_from(AugmentConfig, cfg["augment"], "augment")
    model = load_whisper()
    report = inject(model, pipeline.adapter_config(cfg))
    ds = SpeechDataset(read_manifest(data["train"]), model, "en", aug, seed=args.seed)
    loader = DataLoader(
        ds, tcfg.batch_size, shuffle=True, collate_fn=make_collate(ds.prompt_len, ds.tokenizer.eot)
    )
    dcfg, _ = pipeline.decode_config(cfg)
    val_utts = read_manifest(data["val"])[: args.val_limit]
    val = ValidationWER(val_utts, dcfg, args.every, patience=1000)
    opts = TrainerOptions(
        max_steps=args.steps, log_every=5, checkpoint_every=10**6, progress=False, resume=False,
        seed=args.seed,
    )
    trainer, _ = build_trainer(opts, RunFolder(out / name), [val])
    start = time.time()
    trainer.fit(WhisperAdapterModule(model, tcfg, cache_ok=ds.deterministic), loader)
    return {
        "trainable": report.trainable,
        "seconds": round(time.time() - start, 1),
        "history": val.history,
        "best_step": val.best_step,
        "best_wer": val.best,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/recipe_asr"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--val-limit", type=int, default=40, help="first N validation rows")
    ap.add_argument("--only", nargs="*", choices=list(CANDIDATES), default=["enc", "dec", "both"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(None, [], pipeline.DEFAULTS)
    cfg["eval"].update(batch_size=16, sample_len=48)
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
