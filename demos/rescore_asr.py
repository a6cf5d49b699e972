"""Would validation on an engine the adapters never heard have chosen what carries to held-out speech?

The recipe is chosen on the espeak-ng validation split (the training engine). This scores
trained child-speech adapters again on two validation renderings of the same validation
sentences: espeak-ng's (the training engine) and Festival's ked voice (an engine and voice
in neither training nor the held-out flite set; ``demos/augment_asr.py`` makes it), greedy,
the recipe search's decoding. For models whose held-out child WER is known (pipeline runs:
their ``metrics.json``), it counts the pairs each validation set orders as held-out does.

    OMP_NUM_THREADS=1 .venv/bin/python demos/rescore_asr.py \
        --runs runs/bench_asr/seed0/s2_lora runs/bench_lamlr1/seed0/s2_lora ... \
        --recipe-out runs/recipe3 --candidates enc-mlp-lamlr1 enc-mlp-prox0.1 ... \
        --results demos/results/rescore_asr

``--runs``: pipeline run folders (``adapter/``, ``config.yaml``, ``metrics.json``), named
by their last three path parts. ``--candidates``: recipe-search candidates in
``--recipe-out`` (their ``checkpoints/last.ckpt`` holds the best step's tensors, which
validation put back at the end). The base model (no adapter) is scored too. Held-out
audio is not read: held-out WER comes from the runs' own metrics. Each model's row is
kept in ``<results>.partial.json`` as it is scored, so a stopped rescore picks up there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

from lorakit.core import inject, load_adapter
from lorakit.data.festival import MISSING, available
from lorakit.data.manifest import read_manifest
from lorakit.data.runs import RunFolder, load_config
from lorakit.data.runtime.trainer import safe_load
from lorakit.speech.whisper import pipeline
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.validate import ValidationWER, adapter_state, load_adapter_state

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_asr / augment_asr beside it
import augment_asr  # noqa: E402
import recipe_asr  # noqa: E402

SETS = ("espeak", "festival")


def decode_cfg(cfg: dict):
    """The recipe search's validation decoding (``recipe_asr.VALIDATION_DECODE``)."""
    cfg = {**cfg, "eval": {**cfg["eval"], **recipe_asr.VALIDATION_DECODE}}
    return pipeline.decode_config(cfg)[0]


def candidate_model(cfg: dict, name: str, out: Path):
    """A recipe candidate's model with the tensors of its ``last.ckpt`` (the best step's)."""
    ccfg = recipe_asr.candidate_config(cfg, name, 4)
    model = load_whisper(ccfg["backbone"]["name"])
    inject(model, pipeline.adapter_config(ccfg))
    state = safe_load(out / name / "checkpoints" / "last.ckpt", "checkpoint")["state_dict"]
    want = adapter_state(model)
    got = {k.removeprefix("model."): v for k, v in state.items()}
    wrong = sorted(k for k in want if k not in got or got[k].shape != want[k].shape)
    if wrong:
        raise SystemExit(
            f"error: {out / name}/checkpoints/last.ckpt does not fit candidate {name} "
            f"({wrong[0]} missing or of another shape)"
        )
    load_adapter_state(model, {k: got[k] for k in want})
    return model.eval()


def run_model(folder: Path):
    run = RunFolder.existing(folder)
    cfg = run.read_config()
    model = load_whisper(cfg["backbone"]["name"])
    load_adapter(model, run.adapter)
    return model.eval(), json.loads((folder / "metrics.json").read_text())


def score_all(models: list, scores, partial: Path, n_val: int) -> dict:
    """Each ``(name, make)`` model's validation WERs (``scores(model)``) and held-out WER
    (from ``make``'s metrics), kept in ``partial`` as each is done: a stopped rescore
    resumes there (rows of another ``n_val`` are not reused)."""
    done = json.loads(partial.read_text()) if partial.is_file() else {}
    if done.get("n_val") != n_val:
        done = {"n_val": n_val, "models": {}}
    rows = {}
    for name, make in models:
        if name in done["models"]:
            rows[name] = done["models"][name]
            continue
        model, metrics = make()
        rows[name] = scores(model)
        if metrics:
            rows[name].update(heldout_child=metrics["wer_heldout_child"],
                              heldout_adult=metrics["wer_heldout_adult"])  # fmt: skip
        print(name, json.dumps(rows[name]), flush=True)
        done["models"][name] = rows[name]
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(done, indent=2))
    return rows


def concordance(rows: dict, key: str) -> tuple[int, int]:
    """Pairs of held-out-scored models that ``key`` orders as held-out child WER does
    (ties in either count as not agreeing), and the number of pairs."""
    scored = [r for r in rows.values() if r.get("heldout_child") is not None]
    pairs = list(itertools.combinations(scored, 2))
    agree = sum((a[key] - b[key]) * (a["heldout_child"] - b["heldout_child"]) > 0 for a, b in pairs)
    return agree, len(pairs)


def report(rows: dict, prefix: Path, n_val: int) -> str:
    lines = [
        f"# Validation on an engine not trained on (first {n_val} validation rows each)",
        "",
        "Greedy validation WER of each model on the validation sentences spoken by espeak-ng "
        "(the training engine) and by Festival's ked voice (in neither training nor held-out); "
        "held-out child / adult WER (flite) from the runs' own metrics, where the model is a "
        "pipeline run.",
        "",
        "| model | val WER espeak-ng | val WER Festival | held-out child | held-out adult |",
        "|---|---|---|---|---|",
    ]
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for name, r in rows.items():
        lines.append(
            f"| {name} | {pct(r['espeak'])} | {pct(r['festival'])} | "
            f"{pct(r.get('heldout_child'))} | {pct(r.get('heldout_adult'))} |"
        )
    lines.append("")
    for key in SETS:
        agree, n = concordance(rows, key)
        if n:
            lines.append(
                f"- {key} validation orders {agree} of {n} pairs of held-out-scored models as "
                "held-out child WER does."
            )
    for key in SETS:
        best = min(rows, key=lambda k: (rows[k][key], k))
        lines.append(f"- lowest {key} validation WER: {best} ({pct(rows[best][key])}).")
    text = "\n".join(lines) + "\n"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".md").write_text(text)
    prefix.with_suffix(".json").write_text(json.dumps({"n_val": n_val, "models": rows}, indent=2))
    plot(rows, prefix.with_suffix(".png"))
    return text


def plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, ax = plt.subplots(figsize=(max(6.5, 0.9 * len(names)), 4.2))
    for j, key in enumerate(SETS):
        xs = [i + 0.27 * (j - 1) for i in range(len(names))]
        ax.bar(xs, [rows[n][key] for n in names], 0.27, label=f"validation, {key}")
    held = [(i + 0.27, rows[n]["heldout_child"]) for i, n in enumerate(names)
            if rows[n].get("heldout_child") is not None]  # fmt: skip
    if held:
        ax.bar(*zip(*held, strict=True), 0.27, color="black", alpha=0.75,
               label="held-out child (flite)")  # fmt: skip
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("WER")
    ax.set_xlabel("model")
    ax.set_title("Validation on the training engine vs an unseen one, and held-out child WER",
                 fontsize=10)  # fmt: skip
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path(__file__).with_name("asr.yaml"))
    ap.add_argument("--runs", type=Path, nargs="*", default=[])
    ap.add_argument("--recipe-out", type=Path, default=Path("runs/recipe_asr"))
    ap.add_argument("--candidates", nargs="*", default=[])
    ap.add_argument("--val-limit", type=int, default=64, help="first N rows of each validation set")
    ap.add_argument("--results", type=Path, default=Path("demos/results/rescore_asr"))
    args = ap.parse_args()
    if not available():
        raise SystemExit(f"error: {MISSING}")
    for folder in args.runs:  # every input checked before anything is decoded
        for need in ("metrics.json", "config.yaml", "adapter/adapter_config.json"):
            if not (folder / need).is_file():
                raise SystemExit(f"error: {folder / need} is missing (not a finished run)")
    for name in args.candidates:
        if not (args.recipe_out / name / "checkpoints" / "last.ckpt").is_file():
            raise SystemExit(f"error: {args.recipe_out / name}/checkpoints/last.ckpt is missing")
    torch.set_num_threads(1)
    cfg = load_config(args.config, [], pipeline.DEFAULTS)
    data = pipeline.resolve_data(cfg)
    fest = augment_asr.festival_val(
        data["val"], Path(cfg["data"]["generate"]["dir"]) / "festival-val"
    )
    vals = {"espeak": read_manifest(data["val"])[: args.val_limit],
            "festival": read_manifest(fest)[: args.val_limit]}  # fmt: skip
    dcfg = decode_cfg(cfg)
    models = [("base model", lambda: (load_whisper(cfg["backbone"]["name"]).eval(), None))]
    models += [("/".join(f.resolve().parts[-3:]), lambda f=f: run_model(f)) for f in args.runs]
    models += [
        (n, lambda n=n: (candidate_model(cfg, n, args.recipe_out), None)) for n in args.candidates
    ]
    partial = args.results.with_suffix(".partial.json")
    scores = lambda model: {k: ValidationWER(u, dcfg, 1, 1).wer(model) for k, u in vals.items()}  # noqa: E731
    rows = score_all(models, scores, partial, args.val_limit)
    print(report(rows, args.results, args.val_limit))
    partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
