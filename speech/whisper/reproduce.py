"""``lorakit reproduce kids-asr``: Whisper adapted to real child speech, MyST (LDC2021S05, "My
Science Tutor Children's Conversational Speech") or CSLU OGI Kids' Speech (LDC2007S18), with
the child-speech recipe; test WER before and after.

    lorakit reproduce kids-asr --data-root /data/myst --out runs/kids-myst --opt corpus=myst
    lorakit reproduce kids-asr --data-root /data/cslu_kids --opt corpus=cslu_ogi --check

What it runs: reads the release as published, writes lorakit manifests
(``<out>/manifests/{train,val,test}.jsonl`` and ``prep.json``: what each filter dropped),
trains with ``lorakit train asr``'s recipe (demos/asr.yaml's adapter, lr and augmentation;
``method`` lora | s2_lora), decodes the test split with and without the adapter and writes
``results.json`` and ``results.md``. Every input is checked before any work (``--check`` only
checks): the first missing or unreadable file is named in one line. A finished run
(``metrics.json``) is kept and only its results are rewritten; an interrupted one resumes.

MyST layout (``data_root`` holds ``myst_child_conv_speech/``, as the LDC release unpacks;
ESPnet egs2/myst, SPAPL_KidsASR egs/MyST)::

    myst_child_conv_speech/data/{train,development,test}/<student>/<session>/
        <session>_<turn>.flac     one child turn, 16 kHz
        <session>_<turn>.trn      its transcript (one line); a turn without one is untranscribed
    e.g. data/train/002116/myst_002116_2014-02-27_09-29-01_LS_1.1/myst_002116_..._LS_1.1_001.flac

The speaker is the student folder. The splits are the release's own folders (train ->
train, development -> val, test -> test; ~55.7k / 9.0k / 10.1k turns after the benchmarks'
filters). ``val_size`` development turns (seeded sample) are decoded for early stopping;
the whole test split is scored (``test_size`` caps it for a quick look).

CSLU OGI Kids' layout (``data_root`` is the release folder with ``docs/ speech/ trans/
verify/``; ESPnet egs2/myst_ogi_cmu_kids, SPAPL_KidsASR egs/OGI)::

    speech/scripted/<grade 00-10>/<block>/<speaker>/<id>.wav   prompted words and sentences
    docs/all.map                     <PROMPT> "<text>" per line: the prompt each file read
    docs/*verified.txt               "<path>/<id>.wav <1-4>": 1 good, 2 maybe (other junk),
                                     3 bad (target not said), 4 good with an air puff
    e.g. speech/scripted/01/3/ks112/ks1128j0.wav reads prompt 8J of docs/all.map

A file id is ``ks`` + grade/gender code + speaker (2) + prompt (2) + ``0``; the prompt is
``id[-3:-1]``, its text the all.map line. Only the scripted part is used, as the benchmarks
do for OGI: the spontaneous files are one-minute monologues, past Whisper's 30 s window
(ESPnet cuts them with CTC segmentation first). OGI has no official split: the common one
(Fan et al. 2024, SPAPL_KidsASR ``ogi_data_prepare_spk.sh``) is speaker-disjoint, 70 % of
the speakers for training and the other 30 % split 25/75 into dev and test (7.5 / 22.5 %;
~50.4k / 5.5k / 16.1k files). Here the speaker list is sorted and shuffled with
``split_seed``, so the split is the same on every machine (``ogi_split`` gives the fractions).
``ogi_quality`` ``all`` keeps every scripted file (the benchmark's choice); a list such as
``[1, 4]`` keeps only files verified with those marks in ``docs/*verified.txt``.

Transcripts (``normalise``): MyST marks non-speech events as tags (``<noise>``,
``<no_signal>``, ``<side_speech>``, ``<breath>``, ``<laugh>``, ``<cough>``, ``<sniff>``,
``<silence>``, ``<echo>``, ``<discard>``), unintelligible stretches as ``(())`` or ``(*)``,
a transcriber's uncertain guess as ``((words))``, filled pauses as ``(um)``/``um``,
false starts / truncated words with a trailing hyphen (``th-``, ``wh-``), and uses ``+``,
``*`` and ``[...]`` / ``{...}`` annotations. The recipe strips every tag and annotation,
keeps the words of uncertain guesses and fillers (Whisper's English normaliser drops
um/uh/hmm at scoring), drops false starts (``false_starts=drop``; ``keep`` leaves the
fragment without its hyphen), maps curly quotes and non-breaking spaces, and (defaults)
lower-cases and strips punctuation except apostrophes (``lowercase``,
``strip_punctuation``): WER is scored after Whisper's English normaliser either way. OGI's
prompts go through the same normaliser (commas dropped, as SPAPL's genText.py does).

Filters (each a named option, counted per split in ``prep.json``): untranscribed turns
(MyST: no .trn; OGI: a prompt id missing from all.map); noise-only turns (nothing left
once tags are stripped); turns with an unintelligible mark (``drop_unintelligible``,
default true: the reference lacks words the child said); turns longer than
``max_seconds`` (30 s, Whisper's window: Kid-Whisper and SPAPL drop them from train and
dev and score test below 30 s) or shorter than ``min_seconds`` (default 0: off; ESPnet's
MyST lists drop < 0.5 s); references with fewer than ``min_words`` words once Whisper's
English normaliser has run (MyST 3, as Kid-Whisper / SPAPL / ESPnet count them; OGI 1,
since most OGI prompts are single words), and so filler-only turns ("um uh hmm": nothing
left to score); last, with ``wer_filter_model`` set (e.g. ``large-v2`` in the whisper
cache), turns that model transcribes with WER above ``wer_filter_max`` (0.5), the
benchmarks' check of transcript against audio (Kid-Whisper, SPAPL, ESPnet's MyST lists;
all three splits). It is off by default: it decodes the whole corpus with a large model.

Sources: LDC catalogue pages LDC2021S05 and LDC2007S18; the OGI release readme (docs/,
speech/, trans/, verify/); ESPnet egs2/myst and egs2/myst_ogi_cmu_kids (prepare_data.py,
text_preprocess.py, whisper_filter.py, ogi_scripted_prepare.sh); SPAPL_KidsASR (Fan, Balaji
Shankar, Alwan, "Benchmarking Children's ASR with Supervised and Self-supervised Speech
Foundation Models", Interspeech 2024: myst_data_prepare.sh, myst_filter.py,
ogi_data_prepare_spk.sh, genText.py); Attia et al., "Kid-Whisper" (arXiv 2309.07927).

Options (``--opt key=value``): corpus (myst | cslu_ogi), model (a ``load_whisper`` name;
default the embedded tiny.en), method (s2_lora | lora), steps, batch, lr, r, seed,
val_every, sample_len, val_size, test_size, split_seed, ogi_split, ogi_quality,
max_seconds, min_seconds, min_words, drop_unintelligible, false_starts, lowercase,
strip_punctuation, wer_filter_model, wer_filter_max, overrides (dotted ``lorakit train asr`` keys, last word).
"""

from __future__ import annotations

import random
from pathlib import Path

from lorakit.data.manifest import Utterance, write_manifest
from lorakit.data.runs import check_resume, load_config, read_json, write_json

# the corpus readers, normaliser and filters live in kids_corpora; re-exported here so
# ``lorakit.speech.whisper.reproduce`` keeps every name it had
from .kids_corpora import (  # noqa: F401
    _ANNOTATION,
    _MAP_LINE,
    _PUNCT,
    _TAG,
    MYST_SPLITS,
    OGI_SPLIT,
    UNINTELLIGIBLE,
    Normaliser,
    Prep,
    Raw,
    _duration,
    _need,
    _read_text,
    apply_filters,
    myst_root,
    read_all_map,
    read_corpus,
    read_myst,
    read_ogi,
    read_verified,
    speaker_split,
)

SUMMARY = "Whisper + S2-LoRA/LoRA on real child speech: MyST or CSLU OGI Kids, test WER"
CORPORA = ("myst", "cslu_ogi")
MIN_WORDS = {"myst": 3, "cslu_ogi": 1}
DEFAULTS = {
    "corpus": "myst",
    "model": None,  # the embedded tiny.en (build.DEFAULT_MODEL)
    "method": "s2_lora",
    "steps": 2000,
    "batch": 16,
    "lr": None,  # the recipe's
    "r": None,  # the recipe's
    "seed": 0,
    "val_every": 200,
    "sample_len": 224,  # Whisper's own limit per 30 s window
    "val_size": 200,
    "test_size": 0,  # 0: the whole test split
    "split_seed": 0,
    "ogi_split": list(OGI_SPLIT),
    "ogi_quality": "all",
    "max_seconds": 30.0,
    "min_seconds": 0.0,
    "min_words": None,  # MIN_WORDS[corpus]
    "drop_unintelligible": True,
    "false_starts": "drop",
    "lowercase": True,
    "strip_punctuation": True,
    "wer_filter_model": None,  # e.g. large-v2 (in the whisper cache): the benchmarks' filter
    "wer_filter_max": 0.5,
    "overrides": {},
}
# the keyword options of check() and run(): `lorakit reproduce kids-asr --opt key=value`
OPTIONS = tuple(DEFAULTS)


def _opts(opts: dict) -> dict:
    unknown = sorted(set(opts) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"kids-asr: unknown option(s) {unknown}; valid: {', '.join(OPTIONS)}")
    o = {k: (opts[k] if opts.get(k) is not None else v) for k, v in DEFAULTS.items()}
    if o["corpus"] not in CORPORA:
        raise ValueError(f"kids-asr: corpus must be one of {', '.join(CORPORA)}, got {o['corpus']!r}")
    if o["method"] not in ("s2_lora", "lora"):
        raise ValueError(f"kids-asr: method must be s2_lora or lora, got {o['method']!r}")
    if o["false_starts"] not in ("drop", "keep"):
        raise ValueError(f"kids-asr: false_starts must be drop or keep, got {o['false_starts']!r}")
    if o["min_words"] is None:
        o["min_words"] = MIN_WORDS[o["corpus"]]
    split = [float(x) for x in o["ogi_split"]]
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1) > 1e-6:
        raise ValueError(f"kids-asr: ogi_split must be 3 fractions (train, val, test) summing to 1, got {split}")
    o["ogi_split"] = split
    quality = o["ogi_quality"]
    if quality != "all":
        quality = quality if isinstance(quality, list) else [quality]
        if not quality or any(q not in (1, 2, 3, 4) for q in quality):
            raise ValueError(f"kids-asr: ogi_quality must be all or a list of marks 1-4, got {o['ogi_quality']!r}")
        o["ogi_quality"] = sorted(quality)
    return o


def whisper_wer_filter(prep: Prep, model, o: dict) -> None:
    """Drop the kept turns ``model`` transcribes with WER above ``wer_filter_max`` (the
    benchmarks' check of transcript against audio, with Whisper large-v2 and 50 %)."""
    from .evaluate import score, transcribe_utterances
    from .transcribe import DecodeConfig

    dcfg = DecodeConfig(sample_len=int(o["sample_len"]), max_duration=float(o["max_seconds"]))
    rows = score(prep.kept, transcribe_utterances(model, prep.kept, dcfg))
    prep.kept = []
    for r in rows:
        if r.word_errors / r.ref_words > float(o["wer_filter_max"]):
            prep.drop("whisper_wer")
        else:
            prep.kept.append(r.utt)


def _sample(utts: list[Utterance], n: int, seed: int) -> list[Utterance]:
    if not n or n >= len(utts):
        return utts
    keep = set(random.Random(seed).sample(range(len(utts)), n))
    return [u for k, u in enumerate(utts) if k in keep]


def prepare(data_root, out, **opts) -> dict:
    """Read, filter and write ``<out>/manifests/{train,val,test}.jsonl`` and ``prep.json``;
    returns the prep summary (kept and dropped per split, speakers per split)."""
    o = _opts(opts)
    raws = read_corpus(data_root, o)
    folder = Path(out) / "manifests"
    summary = {"corpus": o["corpus"], "splits": {}}
    judge = None
    if o["wer_filter_model"]:
        import torch

        from .build import load_whisper

        device = "cuda" if torch.cuda.is_available() else "cpu"
        judge = load_whisper(o["wer_filter_model"], device=device)
    for split, rows in raws.items():
        prep = apply_filters(rows, o)
        if judge is not None and prep.kept:
            whisper_wer_filter(prep, judge, o)
        kept = prep.kept
        if split == "val":
            kept = _sample(kept, int(o["val_size"]), int(o["split_seed"]))
        if split == "test":
            kept = _sample(kept, int(o["test_size"]), int(o["split_seed"]))
        if not kept:
            raise ValueError(f"kids-asr: no {split} utterance is left after the filters ({prep.dropped})")
        write_manifest(folder / f"{split}.jsonl", kept)
        summary["splits"][split] = {
            "candidates": len(rows),
            "kept": len(kept),
            "dropped": dict(sorted(prep.dropped.items())),
            "speakers": len({u.speaker for u in kept}),
            "hours": round(sum(u.duration or 0 for u in kept) / 3600, 3),
        }
    summary["options"] = _prep_options(data_root, o)
    write_json(folder / "prep.json", summary)
    return summary


# ---------------------------------------------------------------- recipe entry points


def check(data_root, **opts) -> None:
    """Raise ``ValueError`` naming the first missing or unreadable input (one line); else None."""
    o = _opts(opts)
    raws = read_corpus(data_root, o)
    for split, rows in raws.items():
        if not apply_filters(rows, o).kept:
            raise ValueError(f"kids-asr: no {split} utterance of {data_root} passes the filters")


def config(out, **opts) -> dict:
    """The ``lorakit train asr`` config: the validated recipe on the written manifests."""
    from . import pipeline

    o = _opts(opts)
    m = Path(out) / "manifests"
    cfg = load_config(None, [], pipeline.DEFAULTS)
    if o["model"] is not None:
        cfg["backbone"]["name"] = o["model"]
    cfg["data"].update(train=str(m / "train.jsonl"), val=str(m / "val.jsonl"),
                       test=str(m / "test.jsonl"), heldout=None,
                       max_duration=float(o["max_seconds"]))
    cfg["adapter"]["method"] = o["method"]
    if o["r"] is not None:
        cfg["adapter"].update(r=int(o["r"]), alpha=2.0 * int(o["r"]))
    cfg["optim"].update(batch_size=int(o["batch"]), val_every=int(o["val_every"]))
    if o["lr"] is not None:
        cfg["optim"]["lr"] = float(o["lr"])
    cfg["eval"].update(sets=["test"], sample_len=int(o["sample_len"]))
    cfg["trainer"].update(max_steps=int(o["steps"]), seed=int(o["seed"]), progress=False,
                          checkpoint_every=int(o["val_every"]))
    for key, value in (o["overrides"] or {}).items():
        section, _, name = key.partition(".")
        cfg.setdefault(section, {})[name] = value
    return cfg


PREP_KEYS = ("corpus", "val_size", "test_size", "split_seed", "ogi_split", "ogi_quality",
             "max_seconds", "min_seconds", "min_words", "drop_unintelligible", "false_starts",
             "lowercase", "strip_punctuation", "wer_filter_model", "wer_filter_max")


def _check_same_prep(data_root, out: Path, o: dict) -> None:
    """Refuse to reuse ``out`` with other data options (the manifests would change)."""
    path = out / "manifests" / "prep.json"
    if not path.is_file():
        return
    saved = read_json(path, "prep summary").get("options", {})
    now = _prep_options(data_root, o)
    diff = sorted(k for k in now if saved.get(k) != now[k])
    if diff:
        shown = ", ".join(f"{k} ({saved.get(k)!r} -> {now[k]!r})" for k in diff)
        raise ValueError(f"kids-asr: {out} was prepared with other data options: {shown}; "
                         "choose another --out")


def _prep_options(data_root, o: dict) -> dict:
    return {"data_root": str(Path(data_root).resolve()), **{k: o[k] for k in PREP_KEYS}}


def run(data_root, out, **opts) -> dict:
    """Check, write the manifests, train and evaluate (a finished run with the same config
    is kept; a longer ``steps`` trains on from its last checkpoint); write ``results.json``
    and ``results.md``; returns the results."""
    import yaml

    from . import pipeline

    out = Path(out)
    o = _opts(opts)
    cfg = config(out, **opts)
    check_resume(out, cfg)  # another training config is refused before anything is written
    _check_same_prep(data_root, out, o)
    saved = out / "config.yaml"
    finished = (out / "metrics.json").is_file() and (out / "manifests" / "prep.json").is_file()
    if finished and saved.is_file() and yaml.safe_load(saved.read_text()) == yaml.safe_load(
        yaml.safe_dump(cfg, sort_keys=False)
    ):
        prep = read_json(out / "manifests" / "prep.json", "prep summary")
        metrics = read_json(out / "metrics.json", "metrics")
    else:
        prep = prepare(data_root, out, **opts)
        metrics = pipeline.train(cfg, out)
    results = {
        "corpus": o["corpus"],
        "model": metrics.get("model"),
        "method": metrics.get("method", o["method"]),
        "test_wer": metrics.get("wer"),
        "test_wer_ci": metrics.get("wer_child_ci"),
        "baseline_test_wer": metrics.get("baseline_wer"),
        "baseline_test_wer_ci": metrics.get("baseline_wer_child_ci"),
        "test_cer": metrics.get("cer"),
        "val_wer": metrics.get("val_wer"),
        "trainable_parameters": metrics.get("trainable_parameters"),
        "train_steps": metrics.get("train_steps"),
        "data": prep,
        "options": {k: v for k, v in o.items() if k != "overrides"},
    }
    write_json(out / "results.json", results)
    (out / "results.md").write_text(table(results))
    return results


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(ci) -> str:
    return "" if not ci else f" [{_pct(ci[0])}, {_pct(ci[1])}]"


def table(r: dict) -> str:
    """``results.md``: test WER before/after, then what the filters kept per split."""
    lines = [
        f"# kids-asr on {r['corpus']} ({r['model']}, {r['method']})", "",
        "| model | test WER % [95 % interval] |", "|---|---|",
        f"| base model | {_pct(r['baseline_test_wer'])}{_ci(r['baseline_test_wer_ci'])} |",
        f"| {r['method']} ({r['trainable_parameters']} trainable, {r['train_steps']} steps) "
        f"| {_pct(r['test_wer'])}{_ci(r['test_wer_ci'])} |", "",
        "| split | candidates | kept | speakers | hours | dropped |", "|---|---|---|---|---|---|",
    ]
    for split, s in r["data"]["splits"].items():
        dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "-"
        lines.append(f"| {split} | {s['candidates']} | {s['kept']} | {s['speakers']} | "
                     f"{s['hours']} | {dropped} |")
    return "\n".join(lines) + "\n"
