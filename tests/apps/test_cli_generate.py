"""``lorakit generate``: the four subcommands end to end on a tiny CLIP bank (3 tasks of 2
classes, 4 steps each), a real SIGKILL in the middle of ``bank`` and the re-run that keeps
the finished adapter, the generated adapter loading and changing the stand-in's output, the
generator reproducing bank adapters from their own descriptions better than the bank mean,
and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from lorakit.apps.cli.commands import app
from lorakit.core.io import WEIGHTS_NAME

BANK = ["--tasks", "3", "--held", "2", "--classes", "2", "--steps", "4", "--shots", "4"]

# `lorakit generate bank ARGS` in a child that SIGKILLs itself when the second adapter starts
KILLER = """
import os, signal, sys
from lorakit.apps.cli.commands import main
from lorakit.vision.clip import pipeline
real, calls = pipeline.train, []
def train(*a, **k):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
pipeline.train = train
sys.argv = ["lorakit", "generate", "bank", *sys.argv[1:]]
main()
"""


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _entries(root):
    return sorted((root / "tasks").iterdir())


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A bank built by a run killed (SIGKILL) as its second adapter starts, then re-run."""
    root = tmp_path_factory.mktemp("gen") / "bank"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", KILLER, "--out", str(root), *BANK], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    first = _entries(root)[0]
    killed = {
        "entries": [(d.name, (d / "task.json").is_file()) for d in _entries(root)],
        "weights": (first / "adapter" / WEIGHTS_NAME).read_bytes(),
        "task_mtime": (first / "task.json").stat().st_mtime_ns,
    }
    resumed = _cli("generate", "bank", "--out", root, *BANK)
    assert resumed.exit_code == 0, resumed.output
    return root, killed, resumed.output


def test_killed_bank_keeps_finished_adapters_and_resumes(bank):
    root, killed, output = bank
    assert killed["entries"][0][1] and not any(done for _, done in killed["entries"][1:])
    first = _entries(root)[0]
    assert "[1/3]" in output and ": kept" in output.split("[2/3]")[0]
    assert output.count(": kept") == 1
    assert (first / "adapter" / WEIGHTS_NAME).read_bytes() == killed["weights"]
    assert (first / "task.json").stat().st_mtime_ns == killed["task_mtime"]
    entries = _entries(root)
    assert len(entries) == 3 and all((d / "task.json").is_file() for d in entries)
    record = json.loads((root / "bank.json").read_text())
    assert len(record["tasks"]) == 3 and len(record["held_out"]) == 2
    names = {t["description"] for t in record["tasks"]} | {t["description"] for t in record["held_out"]}
    assert len(names) == 5  # held-out tasks are not in the bank
    for d in entries:  # every entry: an adapter folder and its task description
        task = json.loads((d / "task.json").read_text())
        assert task["description"] in names and (d / "adapter" / "adapter_config.json").is_file()


def test_train_adapter_report_end_to_end(bank, tmp_path):
    from lorakit.core import load_adapter
    from lorakit.vision.clip import pipeline
    root, _, _ = bank
    trained = _cli("generate", "train", "--bank", root, "--steps", "600")
    assert trained.exit_code == 0, trained.output
    assert (root / "generator" / "generator.safetensors").is_file()
    assert not list((root / "generator").rglob("*.pt")) and not list(root.rglob("*.pkl"))

    out = tmp_path / "gen"
    made = _cli("generate", "adapter", "--bank", root, "--task",
                "red hexagon, blue cross in dark style", "--out", out)  # fmt: skip
    assert made.exit_code == 0, made.output
    # the generated adapter loads into the stand-in CLIP and changes what it computes
    model, bb = pipeline.build_classifier(pipeline.DEFAULTS, ["red hexagon", "blue cross"])
    x = torch.randn(2, 3, bb.image_size, bb.image_size)
    with torch.no_grad():
        before = model(x)
        load_adapter(model.clip, out / "adapter")
        after = model(x)
    assert (after - before).abs().max() > 1e-3
    scored = _cli("eval", "clip", "--run", out)  # OUT is a clip run folder too
    assert scored.exit_code == 0, scored.output
    assert 0.0 <= json.loads(scored.output)["accuracy"] <= 1.0

    rep = _cli("generate", "report", "--bank", root)
    assert rep.exit_code == 0, rep.output
    result = json.loads((root / "report" / "report.json").read_text())
    assert len(result["rows"]) == 2
    columns = result["summary"]["columns"]
    assert list(columns) == ["zero-shot", "bank mean", "nearest bank", "generated", "trained"]
    for row in result["rows"]:
        assert all(0.0 <= row[c] <= 1.0 for c in columns)
        assert row["nearest bank task"] in {json.loads((d / "task.json").read_text())["description"]
                                            for d in _entries(root)}  # fmt: skip
    md = (root / "report" / "report.md").read_text()
    assert md.startswith("# ICM-LoRA") and "| generated |" in md
    assert (root / "report" / "report.png").stat().st_size > 10_000


def test_generator_reproduces_bank_adapters_better_than_bank_mean(bank):
    from lorakit.core.generate import load_generator
    from lorakit.vision.clip.adapter_bank import embed_task, load_bank, train_generator

    root, _, _ = bank
    train_generator(root, steps=600)
    gen, meta = load_generator(root / "generator", embed=embed_task)
    entries = load_bank(root).entries
    theta = torch.stack([gen.layout.read(d / "adapter") for _, d in entries])
    mean = theta.mean(0)
    for (task, _), target in zip(entries, theta, strict=True):
        err = (gen.vector(task.description) - target).norm()
        assert err < 0.3 * (mean - target).norm(), task.description
    assert meta["bank_error_vs_mean"] < 0.3


def _one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_input_is_one_clear_line(bank, tmp_path):
    root, _, _ = bank
    missing = tmp_path / "nope"
    for sub in (["train"], ["report"], ["adapter", "--task", "red circle, blue cross", "--out",
                                        tmp_path / "o"]):  # fmt: skip
        _one_line_error(_cli("generate", sub[0], "--bank", missing, *sub[1:]), "no adapter bank")
    _one_line_error(_cli("generate", "adapter", "--bank", root, "--task",
                         "red circle, blue zebra", "--out", tmp_path / "o"), "unknown word 'zebra'")  # fmt: skip
    _one_line_error(_cli("generate", "adapter", "--bank", root, "--task", "red circle",
                         "--out", tmp_path / "o"), "at least 2 classes")  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "bank.json").write_text((root / "bank.json").read_text())
    _one_line_error(_cli("generate", "train", "--bank", empty), "no finished adapters")
    _one_line_error(_cli("generate", "bank", "--out", root, *BANK[:-2], "--shots", "5"),
                    "other settings", "shots")  # fmt: skip
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("mine")
    _one_line_error(_cli("generate", "bank", "--out", other, *BANK), "not empty")
    assert not (tmp_path / "o").exists()
