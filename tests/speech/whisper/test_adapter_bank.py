"""The Whisper side of ``lorakit generate`` on a tiny random Whisper (4 bank conditions, 2
held out, 3 steps each): conditions and their saved description vectors, the rendering
(pitch, tempo, noise), held-out conditions kept out of the bank, the generator reproducing
bank adapters from their own descriptions better than the bank mean, and the CLI's
train / adapter / report on the bank."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from lorakit.apps.cli.commands import app
from lorakit.core.io import WEIGHTS_NAME
from lorakit.speech.whisper import adapter_bank as ab

SPEC = ab.WhisperBankSpec(tasks=4, held=2, steps=3, batch_size=2, train_sentences=3,
                          test_sentences=2, layers=1, model="tiny-random")  # fmt: skip


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    root = tmp_path_factory.mktemp("wbank") / "bank"
    lines = []
    ab.build_bank(root, SPEC, echo=lines.append)
    return root, lines


def test_bank_saves_each_condition_with_its_description_vector(bank):
    root, lines = bank
    record = json.loads((root / "bank.json").read_text())
    assert record["domain"] == "whisper" and len(record["tasks"]) == 4
    assert len(lines) == 4 and all("trained" in line for line in lines)
    for i, task in enumerate(record["tasks"]):
        cond = ab.parse_condition(task["description"])
        assert (cond.semitones, cond.tempo, cond.snr_db) == (task["semitones"], task["tempo"],
                                                              task["snr_db"])  # fmt: skip
        vec = torch.tensor(task["condition"])
        lo = torch.tensor([r[0] for r in ab.RANGES.values()])
        hi = torch.tensor([r[1] for r in ab.RANGES.values()])
        raw = torch.tensor([cond.semitones, cond.tempo, cond.snr_db])
        torch.testing.assert_close(vec, 2 * (raw - lo) / (hi - lo) - 1)
        entry = ab.entry_dir(root, i, cond)
        saved = json.loads((entry / "task.json").read_text())
        assert saved["description"] == task["description"]
        assert (entry / "adapter" / WEIGHTS_NAME).is_file()
    assert ab.is_whisper_bank(root)


def test_held_out_conditions_never_enter_the_bank(bank):
    root, _ = bank
    loaded = ab.load_bank(root)
    bank_names = {c.name for c, _ in loaded.entries}
    held_names = {c.name for c in loaded.held}
    assert len(held_names) == 2 and not bank_names & held_names
    # building the bank rendered (and trained on) the bank's conditions only
    assert {d.name for d in (root / "audio").iterdir()} == bank_names
    # many draws: always distinct
    big_bank, big_held = ab.draw_conditions(ab.WhisperBankSpec(tasks=40, held=20))
    assert len({c.name for c in big_bank + big_held}) == 60


def test_bank_adapters_differ_and_share_their_lora_a(bank):
    from safetensors.torch import load_file

    root, _ = bank
    tensors = [load_file(str(d / "adapter" / WEIGHTS_NAME)) for _, d in ab.load_bank(root).entries]
    b_keys = [k for k in tensors[0] if k.endswith(".B")]
    a_keys = [k for k in tensors[0] if k.endswith(".A")]
    assert b_keys and a_keys
    assert not torch.equal(tensors[0][b_keys[0]], tensors[1][b_keys[0]])  # trained per condition
    assert any(t[b_keys[0]].abs().max() > 0 for t in tensors)


def test_generator_reproduces_bank_adapters_better_than_bank_mean(bank):
    from lorakit.core.generate import load_generator

    root, _ = bank
    info = ab.train_generator(root, steps=1500, lr=5e-3)
    gen, meta = load_generator(root / "generator", embed=ab.embed_condition)
    entries = ab.load_bank(root).entries
    theta = torch.stack([gen.layout.read(d / "adapter") for _, d in entries])
    mean = theta.mean(0)
    for (cond, _), target in zip(entries, theta, strict=True):
        err = (gen.vector(cond.description) - target).norm()
        assert err < 0.5 * (mean - target).norm(), cond.description
    assert meta["condition"] == "embed_condition" and info["bank_error_vs_mean"] < 0.5


def test_render_applies_pitch_tempo_and_noise():
    t = torch.arange(16000) / 16000
    wave = 0.5 * torch.sin(2 * torch.pi * 220 * t)
    slow = ab.render(wave, ab.Condition(0.0, 0.8, 30.0), 0)
    assert abs(slow.numel() - 16000 / 0.8) < 200
    noisy = ab.render(wave, ab.Condition(0.0, 1.0, 10.0), 0)
    snr = 10 * torch.log10(wave.pow(2).mean() / (noisy - wave).pow(2).mean())
    assert abs(float(snr) - 10.0) < 0.3
    up = ab.render(wave, ab.Condition(12.0 / 2, 1.0, 30.0), 0)  # 6 semitones: x 2^(1/2)
    spec = torch.fft.rfft(up[2000:14000]).abs()
    peak_hz = float(spec.argmax()) * 16000 / 12000
    assert abs(peak_hz - 220 * 2**0.5) < 6


def test_condition_text_round_trip_and_errors():
    cond = ab.Condition(-2.5, 1.15, 12.0)
    assert ab.parse_condition(cond.description) == cond
    assert ab.embed_condition(cond.description).shape == (3,)
    assert ab.embed_condition("voice pitch -5 semitones, tempo 0.7, noise 0 dB SNR").tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="outside"):
        ab.parse_condition("voice pitch +9 semitones, tempo 1.0, noise 10 dB SNR")
    with pytest.raises(ValueError, match="write it as"):
        ab.parse_condition("red circle, blue cross")


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_train_adapter_report_on_a_whisper_bank(bank, tmp_path):
    from lorakit.core import load_adapter
    from lorakit.speech.whisper.build import load_whisper

    root, _ = bank
    trained = _cli("generate", "train", "--bank", root, "--steps", "300")
    assert trained.exit_code == 0, trained.output
    out = tmp_path / "gen"
    desc = "voice pitch +1 semitones, tempo 1.1, noise 20 dB SNR"
    made = _cli("generate", "adapter", "--bank", root, "--task", desc, "--out", out)
    assert made.exit_code == 0, made.output
    model = load_whisper("tiny-random")
    load_adapter(model, out / "adapter")  # loads into the bank's Whisper
    assert json.loads((out / "generate.json").read_text())["nearest_bank_task"]
    bad = _cli("generate", "adapter", "--bank", root, "--task", "red circle, blue cross",
               "--out", tmp_path / "o")  # fmt: skip
    assert bad.exit_code == 2 and "write it as" in bad.output

    rep = _cli("generate", "report", "--bank", root)
    assert rep.exit_code == 0, rep.output
    result = json.loads((root / "report" / "report.json").read_text())
    assert result["domain"] == "whisper" and len(result["rows"]) == 2
    assert list(result["summary"]["columns"]) == ab.COLUMNS
    assert result["summary"]["higher_is_better"] is False
    held = {c.description for c in ab.load_bank(root).held}
    assert {r["task"] for r in result["rows"]} == held
    assert all(r[c] >= 0 for r in result["rows"] for c in ab.COLUMNS)
    md = (root / "report" / "report.md").read_text()
    assert md.startswith("# ICM-LoRA generated Whisper adapters") and "| generated |" in md
    nope = _cli("generate", "bank", "--domain", "nope", "--out", tmp_path / "n")
    assert nope.exit_code == 2 and "--domain" in nope.output
