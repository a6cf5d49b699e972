"""Held-out WER over several seeds for demos/bench_asr.py: read each run's per-utterance
scores, pool them over seeds, and give 95 % intervals that resample both sentences and seeds.

    tables = {seed: read_scores(out / f"seed{seed}" / "lora" / "utterances.csv")}
    wer, (lo, hi) = pooled(tables, "heldout_child"), interval(tables, "heldout_child")
    d, lo, hi = paired(tables_a, tables_b, "heldout_child")      # WER(a) - WER(b)

A seed's table maps a sentence (its normalised reference text) to the word errors and
reference words of its utterance(s) in one group. Pooled WER is corpus WER: all errors over
all reference words, over every seed. The interval is a two-level bootstrap: draw the seeds
with replacement, then the sentences with replacement (one draw of sentences shared by the
drawn seeds and, for ``paired``, by both models: the same held-out sentences decoded by each),
so it widens both with sentence-to-sentence spread and with the spread between seeds. With
one seed it is the sentence bootstrap alone.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

Table = dict[str, tuple[int, int]]  # sentence -> (word errors, reference words)
DRAWS = 2000


def read_scores(path: Path, prefix: str = "heldout") -> dict[str, Table]:
    """``{group: {sentence: (errors, words)}}`` of the groups starting with ``prefix`` in a
    run's utterances.csv (or baseline_utterances.csv)."""
    out: dict[str, Table] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if not row["group"].startswith(prefix):
                continue
            table = out.setdefault(row["group"], {})
            e, w = table.get(row["ref_normalized"], (0, 0))
            table[row["ref_normalized"]] = (e + int(row["word_errors"]), w + int(row["ref_words"]))
    if not out:
        raise ValueError(f"{path}: no utterances of a {prefix}* group")
    return out


def _wer(tables: list[Table], sentences: list[str]) -> float:
    errors = sum(t[s][0] for t in tables for s in sentences)
    return errors / max(sum(t[s][1] for t in tables for s in sentences), 1)


def _sentences(tables: dict[int, Table]) -> list[str]:
    keys = [sorted(t) for t in tables.values()]
    if any(k != keys[0] for k in keys):
        raise ValueError("the seeds' runs were scored on different held-out sentences")
    return keys[0]


def pooled(tables: dict[int, Table]) -> float:
    """Corpus WER over every seed's utterances."""
    return _wer(list(tables.values()), _sentences(tables))


def _draw(seeds: list[int], sentences: list[str], rng: random.Random):
    return rng.choices(seeds, k=len(seeds)), rng.choices(sentences, k=len(sentences))


def interval(tables: dict[int, Table], draws: int = DRAWS, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the pooled WER, resampling seeds and sentences."""
    sentences, seeds, rng = _sentences(tables), sorted(tables), random.Random(seed)
    boot = []
    for _ in range(draws):
        pick, sents = _draw(seeds, sentences, rng)
        boot.append(_wer([tables[s] for s in pick], sents))
    boot.sort()
    return boot[int(0.025 * (draws - 1))], boot[int(0.975 * (draws - 1))]


def paired(
    a: dict[int, Table], b: dict[int, Table], draws: int = DRAWS, seed: int = 0
) -> tuple[float, float, float]:
    """WER(a) - WER(b) pooled over seeds, and its 95 % interval: each draw takes the same
    seeds and the same sentences for both. ``b`` may hold one table (the base model, which
    no seed changes): it is then used for every seed of ``a``."""
    if len(b) == 1 and sorted(a) != sorted(b):  # e.g. a batch of seed 2 alone
        only = next(iter(b.values()))
        b = {s: only for s in a}
    if sorted(a) != sorted(b):
        raise ValueError(f"paired: seeds {sorted(a)} against {sorted(b)}")
    sentences = _sentences({(1, k): v for k, v in a.items()} | {(0, k): v for k, v in b.items()})
    seeds, rng = sorted(a), random.Random(seed)

    def delta(pick, sents):
        return _wer([a[s] for s in pick], sents) - _wer([b[s] for s in pick], sents)

    boot = sorted(delta(*_draw(seeds, sentences, rng)) for _ in range(draws))
    return delta(seeds, sentences), boot[int(0.025 * (draws - 1))], boot[int(0.975 * (draws - 1))]


# --------------------------------------------------------------------------- report

GROUPS = (("heldout_child", "child"), ("heldout_adult", "adult"))
PAIRS = (("s2_lora", "base"), ("lora", "base"), ("s2_lora", "lora"))


def summary(scores: dict[str, dict[int, dict[str, Table]]], metrics: dict[str, list[dict]]) -> dict:
    """Pooled WER, intervals, per-seed WER and paired differences.

    ``scores``: model -> seed -> group -> table ("base": one seed); ``metrics``: method ->
    its runs' metrics.json, in seed order."""
    rows = {}
    for model, by_seed in scores.items():
        row = {"seeds": sorted(by_seed)}
        for group, short in GROUPS:
            t = {s: g[group] for s, g in by_seed.items()}
            row[f"wer_{short}"] = round(pooled(t), 4)
            row[f"wer_{short}_ci"] = [round(x, 4) for x in interval(t)]
            row[f"wer_{short}_per_seed"] = [round(pooled({s: t[s]}), 4) for s in sorted(t)]
        runs = metrics.get(model, [])
        if runs:
            row["trainable_parameters"] = runs[0]["trainable_parameters"]
            row["seconds_per_step"] = round(sum(m["seconds_per_step"] for m in runs) / len(runs), 2)
            row["train_steps"] = [m.get("train_steps") for m in runs]
            ranks = [sum(m["s2_lora_ranks"].values()) for m in runs if m.get("s2_lora_ranks")]
            if ranks:
                row["kept_ranks"] = ranks
        rows[model] = row
    diffs = {}
    for a, b in PAIRS:
        if a in scores and b in scores:
            for group, short in GROUPS:
                ta = {s: g[group] for s, g in scores[a].items()}
                tb = {s: g[group] for s, g in scores[b].items()}
                if b != "base":  # two methods: only the seeds both have
                    both = sorted(set(ta) & set(tb))
                    ta, tb = {s: ta[s] for s in both}, {s: tb[s] for s in both}
                diffs[f"{a} - {b}, {short}"] = [round(x, 4) for x in paired(ta, tb)]
    return {"rows": rows, "differences": diffs}


def goals(s: dict) -> dict[str, bool]:
    rows, diffs = s["rows"], s["differences"]
    s2, base, lora = rows["s2_lora"], rows["base"], rows.get("lora")
    out = {
        "child WER at least a third lower than base": s2["wer_child"] <= base["wer_child"] * 2 / 3,
        "child WER lower than base (interval of the difference below 0)": (
            diffs["s2_lora - base, child"][2] < 0
        ),
        "adult WER no worse than base": s2["wer_adult"] <= base["wer_adult"],
    }
    if lora:
        out["within 1 point of LoRA's child WER"] = s2["wer_child"] <= lora["wer_child"] + 0.01
        out["at most a tenth of LoRA's parameters"] = (
            s2["trainable_parameters"] <= lora["trainable_parameters"] / 10
        )
    return out


def _cell(row: dict, short: str) -> str:
    lo, hi = row[f"wer_{short}_ci"]
    return f"{100 * row[f'wer_{short}']:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def overrides_line(overrides: list[str] | tuple[str, ...]) -> str:
    """The benchmark's ``--set`` overrides in words ("" when none): runs off the recipe say so."""
    return f"with --set {' '.join(overrides)}" if overrides else ""


def table(s: dict, checks: dict, model: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    rows, diffs = s["rows"], s["differences"]
    seeds = max(len(r["seeds"]) for r in rows.values())
    lines = [
        f"Whisper {model}, held-out set (flite: another engine, voices and sentences); WER "
        f"pooled over seeds, 95 % intervals resampling sentences and seeds ({seeds} seed(s) "
        "per method; the base model has none)"
        + (f"; adapters trained {overrides_line(overrides)}" if overrides else ""),
        "",
        "| model | seeds | trainable | child WER [95 % CI] | adult WER [95 % CI] "
        "| child WER per seed | s / step | kept ranks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        per_seed = ", ".join(f"{100 * w:.1f}" for w in r["wer_child_per_seed"])
        lines.append(
            f"| {'base model' if name == 'base' else name} | "
            f"{', '.join(map(str, r['seeds'])) if name != 'base' else '-'} | "
            f"{r.get('trainable_parameters', 0):,} | {_cell(r, 'child')} | {_cell(r, 'adult')} | "
            f"{per_seed if name != 'base' else '-'} | {r.get('seconds_per_step', '-')} | "
            f"{', '.join(map(str, r.get('kept_ranks', []))) or '-'} |"
        )
    lines += ["", "| difference (WER points) | value | 95 % CI |", "|---|---|---|"]
    for key, (d, lo, hi) in diffs.items():
        lines.append(f"| {key} | {100 * d:+.1f} | [{100 * lo:+.1f}, {100 * hi:+.1f}] |")
    lines += ["", *(f"- {k}: {'pass' if v else 'MISS'}" for k, v in checks.items())]
    return "\n".join(lines)


def plot(s: dict, path: Path, model: str, overrides: list[str] | tuple[str, ...] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = s["rows"]
    names = list(rows)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for j, (_, short) in enumerate(GROUPS):
        xs = [i + 0.4 * j - 0.2 for i in range(len(names))]
        vals = [rows[n][f"wer_{short}"] for n in names]
        err = [
            [v - rows[n][f"wer_{short}_ci"][0] for v, n in zip(vals, names, strict=True)],
            [rows[n][f"wer_{short}_ci"][1] - v for v, n in zip(vals, names, strict=True)],
        ]
        ax.bar(xs, vals, 0.4, yerr=err, capsize=3, label=f"{short} (pooled, 95 % CI)")
        for x, n in zip(xs, names, strict=True):
            seeds = rows[n][f"wer_{short}_per_seed"]
            if len(seeds) > 1:
                ax.plot([x] * len(seeds), seeds, "k.", ms=4)
    ax.plot([], [], "k.", label="one seed")
    ax.set_xticks(range(len(names)), ["base model" if n == "base" else n for n in names])
    ax.set_xlabel(f"Whisper {model}; adapters trained on espeak-ng speech")
    ax.set_ylabel("held-out WER")
    title = "Held-out WER over seeds (flite: unseen engine, voices, sentences)"
    ax.set_title(title + (f"\n{overrides_line(overrides)}" if overrides else ""), fontsize=10)
    top = max(rows[n][f"wer_{short}_ci"][1] for n in names for _, short in GROUPS)
    ax.set_ylim(0, top * 1.3)  # room for the legend above the bars
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
