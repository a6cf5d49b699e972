"""``lorakit squeeze RUN --rank k``: a new run folder, the original untouched, clear errors."""

import json

from typer.testing import CliRunner

from lorakit.apps.cli.commands import app
from lorakit.core import inject, load_adapter, make_config, methods, save_adapter
from lorakit.core.contract import perturb
from lorakit.core.zoo import build


def _run(tmp_path):
    run = tmp_path / "run"
    model, _, targets, slices = build("linear")
    inject(model, make_config("sora", r=3, targets=targets, slices=slices))
    perturb(model)
    save_adapter(model, run / "adapter")
    (run / "config.yaml").write_text("head: {templates: clip}\n")
    return run, model


def test_squeeze_cli_writes_new_run_and_refuses_bad_input(tmp_path):
    run, model = _run(tmp_path)
    before = (run / "adapter" / "adapter.safetensors").read_bytes()
    result = CliRunner().invoke(app, ["squeeze", str(run), "--rank", "2"])
    assert result.exit_code == 0, result.output
    assert "squeezed sora -> lora r=2" in result.output
    out = tmp_path / "run-r2"
    assert (out / "config.yaml").read_text() == (run / "config.yaml").read_text()
    report = json.loads((out / "squeeze.json").read_text())
    assert report["from_method"] == "sora" and report["rank"] == 2
    assert (run / "adapter" / "adapter.safetensors").read_bytes() == before
    fresh, x, _, _ = build("linear")
    load_adapter(fresh, out / "adapter")
    assert [m.r for m in methods(fresh)] == [2] * len(methods(model))

    again = CliRunner().invoke(app, ["squeeze", str(run), "--rank", "2"])
    assert again.exit_code == 2 and "exists" in again.output
    bad = CliRunner().invoke(app, ["squeeze", str(run), "--rank", "0"])
    assert bad.exit_code == 2 and "positive integer" in bad.output
    missing = CliRunner().invoke(app, ["squeeze", str(tmp_path / "nope"), "--rank", "1"])
    assert missing.exit_code == 2 and "neither a run folder" in missing.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run-r2"]
