"""Which recording-scene augmentations help child speech, chosen on VALIDATION WER only.

    OMP_NUM_THREADS=1 .venv/bin/python demos/augment_asr.py --steps 15 --val-limit 16  # as run
    # results: demos/results/augment_asr.md / .json / .png

Arms (real Whisper tiny.en, the recipe's S2-LoRA adapter, lr, batch; the SAME steps for
every arm): ``recipe`` (the recipe's augmentation: pitch, formant, tempo, SpecAugment) and
the recipe plus each scene augmentation alone (reverb, noise, band-limit, disfluency) and
plus all four; ``festival``: the recipe on the training set plus every training sentence
spoken again by Festival's ked voice (a second engine in training; the same steps). Each arm is scored on the validation sentences after training; the arm
with the lowest validation WER is chosen, then it and ``recipe`` are scored on the
held-out flite set (adult and child, 95 % bootstrap intervals over sentences; the
difference by a paired bootstrap). Held-out audio is read only for those two arms.

Validation is two renderings of the validation sentences (never in training): the
espeak-ng validation split (the training engine, other sentences) and, when Festival's
ked voice is installed, the same sentences spoken by Festival (an engine and voice in
neither training nor the held-out set), adult and child-like. The choice is on the
mean of the two; both are reported. When the ``festival`` arm runs, Festival is no longer
unseen for it, so the choice is on espeak-ng alone (``--choose-on``).

    OMP_NUM_THREADS=1 .venv/bin/python demos/augment_asr.py --steps 15 --val-limit 16 \
        --arms recipe festival --results demos/results/augment_festival  # as run
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import random
import shutil
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lorakit.core import inject
from lorakit.data.audio import AugmentConfig
from lorakit.data.festival import ENGINE as FESTIVAL
from lorakit.data.festival import MISSING, available, speak_festival
from lorakit.data.manifest import Utterance, read_manifest, write_manifest
from lorakit.data.runs import RunFolder, TrainerOptions, build_trainer, dataclass_from, load_config
from lorakit.data.runtime import SeededItems, StepSampler
from lorakit.data.speech import _write
from lorakit.speech.whisper import pipeline
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.evaluate import score, summarize, transcribe_utterances
from lorakit.speech.whisper.features import SpeechDataset, make_collate
from lorakit.speech.whisper.train import TrainConfig, WhisperAdapterModule
from lorakit.speech.whisper.validate import bootstrap_wer

SCENE = {
    "reverb": {"reverb_p": 0.5},
    "noise": {"noise_p": 0.5},
    "bandlimit": {"bandlimit_p": 0.5},
    "disfluency": {"disfluency_p": 0.5},
}
ARMS = {"recipe": {}, **SCENE, "all": {k: v for a in SCENE.values() for k, v in a.items()},
        "festival": {}}  # fmt: skip
# arms whose training set also holds every training sentence spoken by Festival's ked voice
FESTIVAL_TRAIN = {"festival"}


def festival_copy(utts: list[Utterance], out: Path, name: str, seed: int) -> list[Utterance]:
    """``utts``' sentences spoken by Festival's ked voice, each in its own group (adult or
    child-like), cached as ``out/<name>.jsonl``; a cache with a missing file is spoken again."""
    manifest = out / f"{name}.jsonl"
    if manifest.is_file():
        try:
            return read_manifest(manifest)  # every file there: the cache
        except ValueError:
            pass
    rng, spoken = random.Random(seed), []
    for u in utts:
        path = out / "wav" / f"festival-{u.id}.wav"
        spoken.append(_write(path, speak_festival(u.text, u.group, rng), u.text, f"{FESTIVAL}:ked", u.group))
    write_manifest(manifest, spoken)
    return read_manifest(manifest)


def festival_val(val: Path, out: Path, seed: int = 0) -> Path:
    """The validation sentences spoken by Festival (adult and child-like), cached."""
    festival_copy(read_manifest(val), out, "val", seed)
    return out / "val.jsonl"


def festival_train(train: list[Utterance], out: Path, seed: int = 1) -> list[Utterance]:
    """Every training utterance's sentence spoken by Festival: a second engine in training
    (the held-out flite voices stay unseen; Debian's other English Festival voices, kal and
    slt, are flite's held-out ones)."""
    return festival_copy(train, out, "train", seed)


def choice_sets(arms: list[str], vals: dict, choose_on: str) -> list[str]:
    """The validation sets an arm is chosen on. ``auto``: all of them, unless an arm trains
    on Festival, whose validation set then stops being an unseen engine: espeak-ng only."""
    if choose_on == "auto":
        choose_on = "espeak" if FESTIVAL_TRAIN & set(arms) else "mean"
    return list(vals) if choose_on == "mean" else ["espeak"]


def train_arm(name: str, cfg: dict, train: list[Utterance], args) -> tuple:
    aug_cfg = {**cfg["augment"], **ARMS[name]}
    tcfg = dataclass_from(TrainConfig, cfg["optim"], "optim")
    aug = dataclass_from(AugmentConfig, aug_cfg, "augment")
    model = load_whisper()
    torch.manual_seed(args.seed)
    report = inject(model, pipeline.adapter_config(cfg))
    ds = SpeechDataset(train, model, "en", aug, seed=args.seed)
    sampler = StepSampler(len(ds), tcfg.batch_size, args.steps, args.seed)
    loader = DataLoader(
        SeededItems(ds),
        batch_sampler=sampler,
        collate_fn=make_collate(ds.prompt_len, ds.tokenizer.eot),
    )
    opts = TrainerOptions(
        max_steps=args.steps,
        log_every=5,
        checkpoint_every=10**6,
        progress=False,
        resume=False,
        seed=args.seed,
    )
    shutil.rmtree(args.out / name, ignore_errors=True)  # a fresh run every time
    trainer, _ = build_trainer(opts, RunFolder(args.out / name), [], sampler=sampler)
    start = time.time()
    trainer.fit(WhisperAdapterModule(model, tcfg, cache_ok=ds.deterministic), loader)
    return model, report.trainable, time.time() - start


def wer_rows(model, utts: list[Utterance], dcfg):
    return score(utts, transcribe_utterances(model, utts, dcfg), dcfg.language)


def paired_diff_ci(a, b, n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """WER(b) - WER(a) over the same utterances; 95 % bootstrap over sentences."""
    keys = sorted({r.ref_norm for r in a})
    ga = {k: [r for r in a if r.ref_norm == k] for k in keys}
    gb = {k: [r for r in b if r.ref_norm == k] for k in keys}

    def wer(rows):
        return sum(r.word_errors for r in rows) / max(sum(r.ref_words for r in rows), 1)

    rng, draws = random.Random(seed), []
    for _ in range(n):
        pick = [keys[rng.randrange(len(keys))] for _ in keys]
        draws.append(wer([r for k in pick for r in gb[k]]) - wer([r for k in pick for r in ga[k]]))
    draws.sort()
    return wer(b) - wer(a), draws[int(0.025 * (n - 1))], draws[int(0.975 * (n - 1))]


def heldout_summary(rows) -> dict:
    out = {}
    for g in ("heldout_adult", "heldout_child"):
        sub = [r for r in rows if r.utt.group == g]
        out[g] = {"wer": summarize(sub)["wer"], "ci": list(bootstrap_wer(sub))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/augment_asr"))
    ap.add_argument("--results", type=Path, default=Path("demos/results"))
    ap.add_argument("--steps", type=int, default=30)  # the recipe: 200 (CPU budget here)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-limit", type=int, default=32, help="first N rows of each validation set")
    ap.add_argument("--fallback", action="store_true", help="temperature fallback in decoding")
    ap.add_argument(
        "--heldout-base", action="store_true", help="also score the model without adapter"
    )
    ap.add_argument("--arms", nargs="*", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--choose-on", choices=["auto", "mean", "espeak"], default="auto",
                    help="validation sets the arm is chosen on (auto: espeak only if an arm trains on festival)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(None, [], pipeline.DEFAULTS)
    cfg["optim"]["batch_size"] = args.batch
    # plain greedy (no temperature fallback) for every arm alike: the fallback re-decodes
    # unsure transcripts up to 25 times, which the 2-core budget cannot pay per arm
    cfg["eval"].update(batch_size=16, sample_len=48, fallback=args.fallback)
    data = pipeline.resolve_data(cfg)
    dcfg, _ = pipeline.decode_config(cfg)
    train = read_manifest(data["train"])
    vals = {"espeak": read_manifest(data["val"])[: args.val_limit]}
    if available():
        fest = festival_val(data["val"], Path(cfg["data"]["generate"]["dir"]) / "festival-val")
        vals["festival"] = read_manifest(fest)[: args.val_limit]
    else:
        print("festival's ked voice is not installed: validation is espeak-ng only")

    chosen_on = choice_sets(args.arms, vals, args.choose_on)
    if FESTIVAL_TRAIN & set(args.arms) and "festival" not in vals:
        raise SystemExit(f"arm festival: {MISSING}")
    fest_train = (festival_train(train, Path(cfg["data"]["generate"]["dir"]) / "festival-train")
                  if FESTIVAL_TRAIN & set(args.arms) else [])  # fmt: skip
    base = load_whisper()
    rows = {"base": {k: summarize(wer_rows(base, v, dcfg))["wer"] for k, v in vals.items()}}
    print("base", rows["base"], flush=True)
    models = {}
    for name in args.arms:
        pool = train + fest_train if name in FESTIVAL_TRAIN else train
        model, trainable, secs = train_arm(name, copy.deepcopy(cfg), pool, args)
        val = {k: summarize(wer_rows(model, v, dcfg))["wer"] for k, v in vals.items()}
        mean = sum(val[k] for k in chosen_on) / len(chosen_on)
        rows[name] = {**val, "val_mean": mean, "train_s": round(secs, 1), "train_utts": len(pool),
                      "trainable": trainable, "augment": ARMS[name]}  # fmt: skip
        print(name, json.dumps(rows[name]), flush=True)
        (args.out / "partial.json").write_text(json.dumps(rows, indent=2))  # survives a kill
        best = min(rows.keys() - {"base"}, key=lambda a: rows[a]["val_mean"])
        models = {a: m for a, m in {**models, name: model}.items() if a in ("recipe", best)}
        del model  # only the recipe arm and the best so far stay in memory
    chosen = min(args.arms, key=lambda a: rows[a]["val_mean"])
    held = read_manifest(data["heldout"])
    held = [
        dataclasses.replace(
            u, group=u.group if u.group.startswith("heldout") else f"heldout_{u.group}"
        )
        for u in held
    ]
    if args.heldout_base:
        models["no adapter"] = load_whisper()
    order = (["no adapter"] if args.heldout_base else []) + ["recipe", chosen]
    scored = {a: wer_rows(models[a], held, dcfg) for a in dict.fromkeys(order)}
    heldout = {a: heldout_summary(r) for a, r in scored.items()}
    diffs = {}
    for g in ("heldout_adult", "heldout_child"):
        a = [r for r in scored["recipe"] if r.utt.group == g]
        b = [r for r in scored[chosen] if r.utt.group == g]
        diffs[g] = list(paired_diff_ci(a, b))
    result = {"decoding": "fallback" if args.fallback else "greedy", "steps": args.steps, "batch": args.batch, "lr": cfg["optim"]["lr"], "seed": args.seed,
              "val_sets": {k: len(v) for k, v in vals.items()}, "chosen_on": chosen_on, "arms": rows, "chosen": chosen,
              "heldout": heldout, "heldout_diff_chosen_minus_recipe": diffs}  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "augment_asr.json").write_text(json.dumps(result, indent=2))
    write_report(result, args.results)


def write_report(res: dict, out: Path) -> None:
    from lorakit.data.plots import plt  # matplotlib, Agg backend

    arms = [a for a in res["arms"] if a != "base"]
    sets = list(res["val_sets"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    x = range(len(arms))
    for i, s in enumerate(sets):
        axes[0].bar([j + 0.38 * i for j in x], [100 * res["arms"][a][s] for a in arms], 0.38,
                    label=f"validation: {s} ({res['val_sets'][s]} utt.)")  # fmt: skip
    for i, s in enumerate(sets):
        axes[0].axhline(100 * res["arms"]["base"][s], ls="--", lw=1, color=f"C{i}")
    axes[0].set_xticks([j + 0.19 for j in x], arms, rotation=20)
    axes[0].set_ylabel("validation WER (%)  (dashed: no adapter)")
    axes[0].set_title(f"Validation WER per arm ({res['steps']} steps, chosen: {res['chosen']})")
    axes[0].legend(fontsize=8, loc="lower left")
    held = res["heldout"]
    for i, a in enumerate(held):
        for j, g in enumerate(("heldout_adult", "heldout_child")):
            w, (lo, hi) = 100 * held[a][g]["wer"], held[a][g]["ci"]
            axes[1].errorbar(j + 0.15 * (i - 1), w, yerr=[[w - 100 * lo], [100 * hi - w]],
                             fmt="o", capsize=4, color=f"C{i + 2}", label=a if j == 0 else None)  # fmt: skip
    axes[1].set_xticks([0, 1], ["held-out adult (flite)", "held-out child (flite)"])
    axes[1].set_xlim(-0.6, 1.6)
    axes[1].set_ylabel("held-out WER (%), 95 % bootstrap interval")
    axes[1].set_title("Held-out WER (flite): " + ", ".join(held))
    axes[1].legend(fontsize=8)
    what = "training audio" if FESTIVAL_TRAIN & set(arms) else "recording-scene augmentation"
    fig.suptitle(f"Whisper tiny.en + S2-LoRA: {what}, chosen on validation")
    fig.tight_layout()
    fig.savefig(out / "augment_asr.png", dpi=110)
    lines = [
        f"# {what[0].upper() + what[1:]} for child speech (demos/augment_asr.py)",
        "",
        f"Whisper tiny.en, the recipe's S2-LoRA adapter, lr {res['lr']}, batch {res['batch']}, "
        f"**{res['steps']} steps for every arm**, seed {res['seed']}, {res['decoding']} "
        "decoding. Validation sets: "
        + ", ".join(f"{k} ({v} utterances)" for k, v in res["val_sets"].items())
        + "; the arm is chosen on "
        + ("the mean WER of " if len(res.get("chosen_on", res["val_sets"])) > 1 else "the WER of ")
        + " and ".join(res.get("chosen_on", list(res["val_sets"])))
        + (" (an arm trains on Festival's ked voice, so its Festival validation set is no"
           " longer an unseen engine: reported, not chosen on)" if FESTIVAL_TRAIN & set(arms) else "")
        + ".",
        "",
        "| arm | " + " | ".join(f"val WER {s}" for s in sets)
        + (" | val mean | train s |" if len(res.get("chosen_on", sets)) > 1 else " | chosen on | train s |"),
        "|---|" + "---|" * (len(sets) + 2),
        "| no adapter | "
        + " | ".join(f"{100 * res['arms']['base'][s]:.1f}" for s in sets)
        + " | | |",
    ]
    for a in arms:
        r = res["arms"][a]
        lines.append(f"| {a} | " + " | ".join(f"{100 * r[s]:.1f}" for s in sets)
                     + f" | {100 * r['val_mean']:.1f} | {r['train_s']:.0f} |")  # fmt: skip
    best = res["arms"][res["chosen"]]["val_mean"]
    tied = [a for a in arms if a != res["chosen"] and res["arms"][a]["val_mean"] == best]
    tie = f" (tied with {', '.join(tied)}; the first in arm order is taken)" if tied else ""
    lines += ["", f"Chosen on validation: **{res['chosen']}**{tie}. Held-out (flite), 95 % bootstrap "
              "over sentences:", "", "| arm | held-out adult WER | held-out child WER |", "|---|---|---|"]  # fmt: skip
    for a, h in held.items():
        cells = [f"{100 * h[g]['wer']:.1f} [{100 * h[g]['ci'][0]:.1f}, {100 * h[g]['ci'][1]:.1f}]"
                 for g in ("heldout_adult", "heldout_child")]  # fmt: skip
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    d = res["heldout_diff_chosen_minus_recipe"]
    if res["chosen"] == "recipe":
        lines += ["", "The chosen arm is the recipe itself: no held-out difference to test."]
        (out / "augment_asr.md").write_text("\n".join(lines) + "\n")
        return
    lines += ["", "Chosen minus recipe (paired bootstrap, points): "
              + "; ".join(f"{g}: {100 * v[0]:+.1f} [{100 * v[1]:+.1f}, {100 * v[2]:+.1f}]" for g, v in d.items())]  # fmt: skip
    (out / "augment_asr.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
