"""``lorakit transcribe`` and ``lorakit export-asr`` on a tiny random Whisper."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lorakit.apps.cli.commands import app
from lorakit.core import inject, make_config, save_adapter
from lorakit.data.manifest import read_manifest
from lorakit.data.runs import RunFolder
from lorakit.speech.whisper.build import tiny_whisper


def test_transcribe_with_run_and_model(corpus, tmp_path):
    wav = str(read_manifest(corpus["test"])[0].audio)
    run = RunFolder(tmp_path / "run")
    run.write_config({"model": {"name": "tiny-random", "language": "en"}})
    model = tiny_whisper()
    inject(model, make_config("lora", r=2, targets=("whisper-attn",)))
    save_adapter(model, run.adapter)
    runner = CliRunner()
    res = runner.invoke(app, ["transcribe", "--run", str(run.path), "--json", wav])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1])["audio"] == wav
    res = runner.invoke(app, ["transcribe", "--model", "tiny-random", "--max-duration", "0.5", wav])
    assert res.exit_code == 2 and "over the limit" in res.output
    res = runner.invoke(app, ["export-asr", "--run", str(run.path), "--format", "pt"])
    assert res.exit_code == 0, res.output
    assert (run.path / "export" / "whisper-merged.pt").is_file()
