"""``lorakit reproduce kids-asr`` on tiny fake MyST and CSLU OGI Kids' trees in the
releases' layouts (tiny random Whisper), plus the transcript normaliser, the filters and
the OGI speaker split on their own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from lorakit.apps.cli.commands import app
from lorakit.data.manifest import read_manifest
from lorakit.speech.whisper import reproduce
from lorakit.speech.whisper.reproduce import Normaliser, Raw, apply_filters, speaker_split

SR = 16000
# the tiny random Whisper: short decodes, two steps, no augmentation cost worth mentioning
TINY = ["--opt", "model=tiny-random", "--opt", "steps=2", "--opt", "batch=2",
        "--opt", "val_every=1", "--opt", "sample_len=4"]


def _audio(path, seconds=0.6, freq=220.0, fmt=None):
    t = np.arange(int(seconds * SR)) / SR
    wave = (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, SR, format=fmt)
    return path


# real-looking MyST turns: (transcript or None for untranscribed, seconds)
MYST_TURNS = [
    ("um so the magnet sticks to the (()) nail", 0.6),  # unintelligible: dropped
    ("<no_signal>", 0.6),  # noise only: dropped
    ("the wh- the water evaporated", 0.6),  # false start dropped, kept
    (None, 0.6),  # untranscribed: dropped
    ("it goes around the circuit and the bulb lights up", 31.0),  # too long: dropped
    ("yes", 0.6),  # fewer than three words: dropped
    ("<side_speech> I think it's the battery", 0.7),  # kept
    ("((because)) the Metal conducts electricity.", 0.8),  # kept
    ("um (uh) hmm", 0.6),  # fillers only: nothing to score, dropped
    ("uh the magnet um", 0.6),  # two scored words: dropped
]


def myst_tree(root):
    data = root / "myst_child_conv_speech" / "data"
    for k, folder in enumerate(("train", "development", "test")):
        for student in (f"00{k}116", f"00{k}204"):
            session = f"myst_{student}_2014-02-27_09-29-01_LS_1.1"
            d = data / folder / student / session
            for turn, (text, secs) in enumerate(MYST_TURNS, 1):
                stem = f"{session}_{turn:03d}"
                _audio(d / f"{stem}.flac", secs, 200.0 + 20 * turn, fmt="FLAC")
                if text is not None:
                    (d / f"{stem}.trn").write_text(text + "\n")
    (root / "myst_child_conv_speech" / "docs").mkdir()
    return root


OGI_PROMPTS = {"00": "one", "01": "two", "8j": "the cat sat on the mat", "1a": "kite, please"}


def ogi_tree(root, n_speakers=8):
    """speech/scripted/<grade>/<block>/<speaker>/<id>.wav, docs/all.map, docs/*verified.txt."""
    lines = [f'{k.upper()} "{v}"' for k, v in OGI_PROMPTS.items()]
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "all.map").write_text("\n".join(lines) + "\n")
    verified = []
    for s in range(n_speakers):
        grade = f"{s % 3:02d}"
        spk = f"ks{s % 3}{s:02d}"
        for p, prompt in enumerate(["00", "01", "8j", "1a", "zz"]):  # zz: not in all.map
            rel = f"speech/scripted/{grade}/{s % 4}/{spk}/{spk}{prompt}0.wav"
            _audio(root / rel, 0.5, 300.0 + 10 * p)
            verified.append(f"../{rel} {3 if prompt == '01' else 1}")
    (root / "docs" / "00-verified.txt").write_text("\n".join(verified) + "\n")
    for empty in ("trans", "verify", "labels", "misc"):
        (root / empty).mkdir()
    return root


# ---------------------------------------------------------------- transcripts and filters


@pytest.mark.parametrize(
    "raw, text, unintelligible",
    [
        ("<noise> i think it's (um) the magnet <breath>", "i think it's um the magnet", False),
        ("the wh- the water evaporated", "the the water evaporated", False),
        ("it (()) sticks", "it sticks", True),
        ("(*) the iron", "the iron", True),
        ("((because)) it's Metal.", "because it's metal", False),
        ("<no_signal>", "", False),
        ("<side_speech> +um+ [laughs] it's magnetic\u00a0", "um it's magnetic", False),
        ("I\u2019m sure, it\u2019s \u2018the\u2019 North pole!", "i'm sure it's the north pole", False),
    ],
)
def test_normaliser_on_myst_lines(raw, text, unintelligible):
    assert Normaliser()(raw) == (text, unintelligible)


def test_normaliser_options():
    assert Normaliser(false_starts="keep")("the wh- water")[0] == "the wh water"
    assert Normaliser(lowercase=False, strip_punctuation=False)("It's Metal.")[0] == "It's Metal."


def _raw(text, secs=1.0):
    return Raw("u", reproduce.Path("/x.flac"), "s1", text, secs)


def test_filters_drop_each_kind_and_count_them():
    o = reproduce._opts({"corpus": "myst"})
    raws = [_raw(t, s) for t, s in MYST_TURNS]
    prep = apply_filters(raws, o)
    assert [u.text for u in prep.kept] == [
        "the the water evaporated", "i think it's the battery", "because the metal conducts electricity"
    ]
    assert prep.dropped == {"unintelligible": 1, "noise_only": 1, "untranscribed": 1,
                            "too_long": 1, "too_few_words": 2, "fillers_only": 1}
    kept = apply_filters(raws, reproduce._opts({"drop_unintelligible": False, "max_seconds": 40,
                                                "min_words": 1}))
    assert len(kept.kept) == 7
    assert kept.dropped == {"noise_only": 1, "untranscribed": 1, "fillers_only": 1}
    assert reproduce._opts({"corpus": "cslu_ogi"})["min_words"] == 1  # OGI prompts: single words
    assert apply_filters([_raw("abc", 0.2)], reproduce._opts({"min_seconds": 0.5, "min_words": 1})).dropped == {"too_short": 1}


def test_bad_options_are_named():
    assert reproduce._opts({"ogi_quality": 1})["ogi_quality"] == [1]
    for bad, key in (({"ogi_quality": [5]}, "ogi_quality"), ({"corpus": "cmu"}, "corpus"),
                     ({"ogi_split": [0.5, 0.5, 0.5]}, "ogi_split"), ({"method": "dora"}, "method"),
                     ({"false_starts": "x"}, "false_starts")):
        with pytest.raises(ValueError, match=key):
            reproduce._opts(bad)


def test_ogi_split_is_speaker_disjoint_and_seeded():
    speakers = [f"ks{k:03d}" for k in range(40)]
    a = speaker_split(speakers, reproduce.OGI_SPLIT, 0)
    assert a == speaker_split(list(reversed(speakers)), reproduce.OGI_SPLIT, 0)  # same split
    assert a != speaker_split(speakers, reproduce.OGI_SPLIT, 1)
    assert [len(a[s]) for s in ("train", "val", "test")] == [28, 3, 9]
    assert not (a["train"] & a["val"] or a["train"] & a["test"] or a["val"] & a["test"])
    assert a["train"] | a["val"] | a["test"] == set(speakers)


def test_ogi_reads_prompts_quality_and_split(tmp_path):
    root = ogi_tree(tmp_path / "ogi")
    parts = reproduce.read_corpus(root, reproduce._opts({"corpus": "cslu_ogi"}))
    spk = {s: {r.speaker for r in rows} for s, rows in parts.items()}
    assert not (spk["train"] & spk["test"] or spk["train"] & spk["val"] or spk["val"] & spk["test"])
    every = [r for rows in parts.values() for r in rows]
    assert len(every) == 40
    texts = {r.id[-3:-1]: r.transcript for r in every}
    assert texts["8j"] == "the cat sat on the mat" and texts["zz"] is None
    verified = reproduce.read_corpus(root, reproduce._opts({"corpus": "cslu_ogi", "ogi_quality": [1]}))
    assert {r.id[-3:-1] for rows in verified.values() for r in rows} == {"00", "8j", "1a", "zz"}


# ---------------------------------------------------------------- checks and the CLI


def test_check_names_the_first_missing_file(tmp_path):
    runner = CliRunner()
    root = myst_tree(tmp_path / "myst")
    ok = runner.invoke(app, ["reproduce", "kids-asr", "--data-root", str(root), "--check"])
    assert ok.exit_code == 0 and "every input" in ok.output, ok.output
    victim = sorted((root / "myst_child_conv_speech/data/development").rglob("*_007.flac"))[0]
    victim.unlink()
    res = runner.invoke(app, ["reproduce", "kids-asr", "--data-root", str(root), "--check"])
    assert res.exit_code == 2
    assert f"{victim} is missing" in res.output and len(res.output.strip().splitlines()) == 1
    ogi = ogi_tree(tmp_path / "ogi")
    (ogi / "speech/scripted/01/1/ks101/ks1018j0.wav").unlink()
    res = runner.invoke(app, ["reproduce", "kids-asr", "--data-root", str(ogi), "--check",
                              "--opt", "corpus=cslu_ogi", "--opt", "ogi_quality=[1, 4]"])
    assert res.exit_code == 2 and "ks1018j0.wav (listed in 00-verified.txt:8) is missing" in res.output
    (ogi / "docs/all.map").write_text('00 "one"\nbroken line\n')
    res = runner.invoke(app, ["reproduce", "kids-asr", "--data-root", str(ogi), "--check",
                              "--opt", "corpus=cslu_ogi"])
    assert res.exit_code == 2 and "all.map:2" in res.output
    res = runner.invoke(app, ["reproduce", "kids-asr", "--data-root", str(tmp_path / "nowhere"),
                              "--check"])
    assert res.exit_code == 2 and "nowhere is missing" in res.output


def test_myst_end_to_end_through_the_cli_and_resume(tmp_path):
    root = myst_tree(tmp_path / "myst")
    out = tmp_path / "run"
    cmd = ["reproduce", "kids-asr", "--data-root", str(root), "--out", str(out), *TINY]
    res = CliRunner().invoke(app, cmd)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["corpus"] == "myst" and results["train_steps"] == 2
    assert 0 <= results["test_wer"] and results["baseline_test_wer"] is not None
    test = read_manifest(out / "manifests" / "test.jsonl")
    assert len(test) == 6 and {u.speaker for u in test} == {"002116", "002204"}
    assert "the the water evaporated" in {u.text for u in test}
    assert all(u.duration <= 30.0 for u in test)
    split = results["data"]["splits"]["train"]
    assert split["kept"] == 6 and split["dropped"]["too_long"] == 2
    assert "| base model |" in (out / "results.md").read_text()
    metrics = (out / "metrics.json").read_bytes()
    again = CliRunner().invoke(app, cmd)  # a finished run is kept, not retrained
    assert again.exit_code == 0, again.output
    assert (out / "metrics.json").read_bytes() == metrics
    changed = CliRunner().invoke(app, [*cmd, "--opt", "lr=0.01"])
    assert changed.exit_code == 2 and "optim.lr" in changed.output, changed.output
    changed = CliRunner().invoke(app, [*cmd, "--opt", "min_words=2"])
    assert changed.exit_code == 2 and "min_words (3 -> 2)" in changed.output, changed.output
    assert len(read_manifest(out / "manifests" / "test.jsonl")) == 6  # nothing rewritten


def test_ogi_end_to_end(tmp_path):
    root = ogi_tree(tmp_path / "ogi")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["reproduce", "kids-asr", "--data-root", str(root), "--out",
                                   str(out), "--opt", "corpus=cslu_ogi", "--opt", "method=lora", *TINY])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "lora" and results["corpus"] == "cslu_ogi"
    splits = results["data"]["splits"]
    assert sum(s["candidates"] for s in splits.values()) == 40
    assert all(s["dropped"] == {"untranscribed": s["candidates"] // 5} for s in splits.values())
    speakers = {s: {u.speaker for u in read_manifest(out / "manifests" / f"{s}.jsonl")}
                for s in ("train", "val", "test")}
    assert not (speakers["train"] & speakers["test"]) and speakers["val"]


def test_whisper_wer_filter_drops_turns_the_judge_gets_wrong(tmp_path, monkeypatch):
    from lorakit.speech.whisper import evaluate

    def judge(model, utts, cfg):  # the judge hears only the turns about water
        return [u.text if "water" in u.text else "completely different words here" for u in utts]

    monkeypatch.setattr(evaluate, "transcribe_utterances", judge)
    root = myst_tree(tmp_path / "myst")
    prep = reproduce.prepare(root, tmp_path / "out", wer_filter_model="tiny-random")
    train = prep["splits"]["train"]
    assert train["kept"] == 2 and train["dropped"]["whisper_wer"] == 4
    assert {u.text for u in read_manifest(tmp_path / "out/manifests/train.jsonl")} == {
        "the the water evaporated"}
    kept = reproduce.prepare(root, tmp_path / "out2", wer_filter_model="tiny-random",
                             wer_filter_max=1.0)  # "different words" vs 3-6 word refs: WER <= 1
    assert "whisper_wer" not in kept["splits"]["train"]["dropped"]
