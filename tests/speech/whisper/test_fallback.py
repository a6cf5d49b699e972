"""Whisper's temperature fallback on both engines: a random-weights Whisper whose greedy
decoding loops ("Biol Biol Biol ...") is decoded again at rising temperature until the text
stops looping; with ``fallback=False`` the loop comes back. Plus the fallback's own rules on
a scripted decoder (which utterances are re-decoded, at which temperatures, what is kept)."""

from __future__ import annotations

import pytest
import torch

from lorakit.data.runs import dataclass_from
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.fallback import (
    Attempt,
    FallbackRule,
    compression_ratio,
    decode_with_fallback,
)
from lorakit.speech.whisper.transcribe import DecodeConfig, decode

LOOP = "the cat sat " + "on the mat " * 20  # compression ratio ~ 8


def _loop_input():
    model = load_whisper("tiny-random")
    return model, torch.randn(3, 80, 600, generator=torch.Generator().manual_seed(0))


def test_openai_engine_guard_breaks_a_greedy_loop():
    model, mels = _loop_input()
    plain = decode(model, mels, DecodeConfig(fallback=False, sample_len=32))
    assert all(compression_ratio(t) > 2.4 for t in plain), plain  # greedy loops
    guarded = decode(model, mels, DecodeConfig(sample_len=32))  # fallback is the default
    assert all(compression_ratio(t) <= 2.4 for t in guarded), guarded
    assert all(g != p for g, p in zip(guarded, plain, strict=True))
    assert decode(model, mels, DecodeConfig(sample_len=32)) == guarded  # seeded: repeats


def test_ct2_engine_guard_breaks_a_greedy_loop(tmp_path):
    pytest.importorskip("ctranslate2")
    from lorakit.speech.whisper.ct2_run import ct2_transcribe
    from lorakit.speech.whisper.export import export_ct2

    model, mels = _loop_input()
    folder = export_ct2(model, tmp_path / "ct2", dtype="float32")
    plain = ct2_transcribe(folder, mels, model, sample_len=60, cfg=DecodeConfig(fallback=False))
    assert all(compression_ratio(t) > 2.4 for t in plain), plain
    guarded = ct2_transcribe(folder, mels, model, sample_len=60)  # default: fallback on
    assert all(compression_ratio(t) <= 2.4 for t in guarded), guarded
    assert ct2_transcribe(folder, mels, model, sample_len=60) == guarded


class Scripted:
    """A decoder whose answer per (utterance, temperature) is scripted; records its calls."""

    def __init__(self, script: dict[tuple[int, float], tuple[str, float]]):
        self.script, self.calls = script, []

    def __call__(self, rows: list[int], t: float) -> list[Attempt]:
        self.calls.append((list(rows), t))
        return [Attempt(*self.script.get((i, t), (LOOP, -0.1)), t) for i in rows]


def test_fallback_redecodes_only_degenerate_utterances_until_one_passes():
    good, unsure = ("a red ball", -0.3), ("a red wall", -1.5)
    run = Scripted({(0, 0.0): good, (1, 0.0): unsure, (1, 0.2): ("a red bell", -0.8)})
    run.script.update({(2, t): (LOOP, -0.05) for t in (0.0, 0.2, 0.4, 0.6, 0.8)})
    run.script[(2, 1.0)] = ("noise words", -2.0)
    texts = decode_with_fallback(run, 4, FallbackRule())
    # 0 passes greedy; 1 (unsure) passes at 0.2; 2 loops until 1.0 where the text is calm
    # but unsure: kept, as the most likely one that does not loop; 3 loops everywhere
    assert texts == ["a red ball", "a red bell", "noise words", LOOP]
    assert run.calls[:3] == [([0, 1, 2, 3], 0.0), ([1, 2, 3], 0.2), ([2, 3], 0.4)]
    assert [t for _, t in run.calls] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert decode_with_fallback(Scripted({}), 2, None) == [LOOP, LOOP]  # off: greedy only


def test_fallback_settings_come_from_the_eval_section():
    cfg = dataclass_from(DecodeConfig, {"fallback": False}, "eval")
    assert cfg.rule() is None
    rule = dataclass_from(DecodeConfig, {"temperature_step": 0.5}, "eval").rule()
    assert rule.temperatures() == [0.0, 0.5, 1.0]
    assert FallbackRule().temperatures() == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    with pytest.raises(ValueError, match="eval.temperature_step"):
        DecodeConfig(temperature_step=0).rule()


def test_transcribe_cli_guards_by_default_and_no_fallback_turns_it_off(corpus):
    from typer.testing import CliRunner

    from lorakit.apps.cli.commands import app
    from lorakit.data.manifest import read_manifest

    wav = str(read_manifest(corpus["test"])[0].audio)
    texts = {}
    for flag in ([], ["--no-fallback"]):
        res = CliRunner().invoke(app, ["transcribe", "--model", "tiny-random", *flag, wav])
        assert res.exit_code == 0, res.output
        texts[bool(flag)] = res.output.strip().splitlines()[-1].split("\t", 1)[1]
    assert compression_ratio(texts[True]) > 2.4, texts  # plain greedy loops on this model
    assert compression_ratio(texts[False]) <= 2.4, texts
