"""The ASR benchmark scripts: demos/transcribe_asr.py (lorakit transcribe vs openai-whisper's
own transcribe) and demos/bench_asr.py's configuration for a second model size."""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path

from typer.testing import CliRunner

from lorakit.data.manifest import read_manifest

DEMOS = Path(__file__).resolve().parents[3] / "demos"


def _demo(name: str):
    spec = importlib.util.spec_from_file_location(name, DEMOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_group_scores_count_a_looping_child_transcript(heldout_manifest):
    tr = _demo("transcribe_asr")
    utts = read_manifest(heldout_manifest)
    hyps = [u.text for u in utts]
    loop = next(i for i, u in enumerate(utts) if u.group == "heldout_child")
    hyps[loop] = "my best friend has a " + "hands to " * 40  # the looping transcript
    out = tr.group_scores(utts, hyps)
    assert out["looping"] == [loop]
    assert out["heldout_adult"]["wer"] == 0.0
    assert out["heldout_child"]["wer"] > 0.15  # one 80-word loop: ~400 reference words
    lo, hi = out["heldout_child"]["ci95"]
    assert lo <= out["heldout_child"]["wer"] <= hi


def test_paired_prefixes_hold_both_voices_of_the_same_sentences(heldout_manifest):
    tr = _demo("transcribe_asr")
    utts = read_manifest(heldout_manifest)
    random.Random(0).shuffle(utts)  # voices and sentences in any order
    first = tr.paired(utts, 4)
    assert [u.group for u in first] == ["heldout_adult", "heldout_child"] * 2
    assert first[0].text == first[1].text != first[2].text == first[3].text
    every = tr.paired(utts)
    assert sorted(map(str, (u.audio for u in every))) == sorted(map(str, (u.audio for u in utts)))


def test_summary_scores_only_the_decoded_prefix(heldout_manifest):
    tr = _demo("transcribe_asr")
    utts = tr.paired(read_manifest(heldout_manifest))
    hyps = {m: [u.text for u in utts[:4]] for m in tr.MODES}
    hyps["openai_whisper"][3] = "something else"
    out = tr.summary(utts, hyps, {"openai_whisper": 1.0})
    assert out["n_files"] == 4 and out["identical_lorakit_vs_openai"] == 3
    assert out["scores"]["lorakit"]["heldout_child"]["wer"] == 0.0
    assert out["scores"]["openai_whisper"]["heldout_child"]["wer"] > 0.0


def test_lorakit_mode_is_what_the_cli_prints(heldout_manifest, tmp_path):
    """The demo's ``lorakit`` column decodes exactly as ``lorakit transcribe --json``
    (224 tokens, fallback on) and its ``lorakit_no_fallback`` as ``--no-fallback``; on a
    random-weights Whisper, whose greedy text loops to the token limit, both differ."""
    from lorakit.apps.cli.commands import app
    from lorakit.speech.whisper.build import load_whisper

    tr = _demo("transcribe_asr")
    utts = tr.paired(read_manifest(heldout_manifest), 2)
    got = tr.lorakit_transcribe(load_whisper("tiny-random"), utts)
    for mode, flags in (("lorakit", []), ("lorakit_no_fallback", ["--no-fallback"])):
        cmd = ["transcribe", "--model", "tiny-random", "--json", *flags, *(str(u.audio) for u in utts)]
        res = CliRunner().invoke(app, cmd)
        assert res.exit_code == 0, res.output
        printed = [json.loads(line)["text"] for line in res.output.splitlines()]
        assert got[mode] == printed, mode
    assert got["lorakit"] != got["lorakit_no_fallback"]


def _bench_args(**kw) -> argparse.Namespace:
    return argparse.Namespace(
        **{"config": DEMOS / "asr.yaml", "set": [], "steps": 0, "seed": 0, **kw}
    )


def test_bench_config_runs_base_with_the_same_budget_for_both_methods():
    bench = _demo("bench_asr")
    args = _bench_args(
        config=DEMOS / "asr_base.yaml", set=["data.generate.val_sentences=16"], steps=40, seed=2
    )
    s2, lora = bench.bench_config("s2_lora", args), bench.bench_config("lora", args)
    for cfg in (s2, lora):
        assert cfg["backbone"]["name"] == "base-ct2"
        assert cfg["data"]["generate"]["val_sentences"] == 16
        assert cfg["trainer"]["max_steps"] == 40 and cfg["trainer"]["seed"] == 2
    assert s2["adapter"]["method"] == "s2_lora" and lora["adapter"]["method"] == "lora"
    assert lora["adapter"]["targets"] == s2["adapter"]["targets"]
    assert lora["optim"]["lr"] == bench.LORA_LR != s2["optim"]["lr"]
    tiny = bench.bench_config("s2_lora", _bench_args())
    assert tiny["backbone"]["name"] == "tiny.en-ct2" and tiny["trainer"]["max_steps"] == 200
