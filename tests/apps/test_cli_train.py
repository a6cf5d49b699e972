"""``lorakit train`` options and early validation: one-line errors, nothing left behind."""

import pytest
import torch
from typer.testing import CliRunner

from lorakit.apps.cli.commands import app

BAD = [
    ("clip", ["--precision", "fp7"], "trainer.precision 'fp7' is unknown"),
    ("cod", ["--set", "trainer.max_steps=many"], "trainer.max_steps must be an integer"),
    ("ood", ["--strategy", "nonsense"], "trainer.strategy 'nonsense' is unknown"),
    ("asr", ["--set", "optim.bogus=1"], "optim: unknown key(s) ['bogus']"),
    ("cod", ["--set", "loss.ema_decay=2"], "loss.ema_decay must be in"),
    ("ood", ["--set", "adapter.method=dora"], "adapter.method must be one of"),
    ("clip", ["--set", "optim.lr=-1"], "optim.lr must be positive"),
    # a method bringing its own optimizer (GORP) would train only its LoRA part here
    ("clip", ["--set", "adapter.method=gorp"], "'gorp' brings its own optimizer"),
    ("asr", ["--set", "adapter.method=gorp"], "protocol.method_optimizer"),
]
if not torch.cuda.is_available():
    BAD.append(("cod", ["--accelerator", "gpu"], "no CUDA GPU is visible"))


@pytest.mark.parametrize(("pipeline", "args", "message"), BAD)
def test_rejected_run_is_one_line_and_leaves_nothing(tmp_path, pipeline, args, message):
    out = tmp_path / "run"
    # generated data would land here (and in the COD cache / OOD task root) if validation
    # came after data generation
    cache = tmp_path / "cache"
    where = {"cod": ["--set", f"data.cache={cache}"], "ood": ["--set", f"data.root={cache}"]}
    result = CliRunner().invoke(
        app, ["train", pipeline, "--out", str(out), *where.get(pipeline, []), *args]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not out.exists() and not cache.exists()


def test_train_help_documents_the_trainer_options():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    for option in ("--accelerator", "--devices", "--nodes", "--strategy", "--precision"):
        assert option in result.output
    assert "bf16-mixed" in result.output and "resumed_from_step" in result.output
