"""The CLI's checks that run before torch is imported: wrong run kinds, missing files."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import yaml

from lorakit.apps.pipelines import PIPELINES as REGISTRY
from lorakit.apps.pipelines import SINGLE_TASK, pipeline_module
from lorakit.apps.run_kind import SIGNATURES, check_run, run_kind

PIPELINES = {name: REGISTRY[name].module for name in SINGLE_TASK}


def _signed(key: str) -> dict:
    section, _, inner = key.partition(".")
    return {section: {inner: {}} if inner else {}}


@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_each_pipeline_config_has_its_own_signature_section(pipeline):
    defaults = importlib.import_module(PIPELINES[pipeline]).DEFAULTS
    assert run_kind(defaults) == pipeline
    for p in PIPELINES:  # each signature alone names its own pipeline
        assert run_kind(_signed(SIGNATURES[p])) == p


def test_one_registry_feeds_the_cli_prebuilt_compare_and_run_kinds():
    from lorakit.apps import run_kind
    from lorakit.apps.cli import commands as cli
    from lorakit.apps.compare import pipelines as compare_pipelines
    from lorakit.apps.web import prebuilt

    assert cli.PIPELINES == {n: p.module for n, p in REGISTRY.items()}
    assert prebuilt.PIPELINE_MODULES == PIPELINES and set(SINGLE_TASK) < set(REGISTRY)
    assert {n: s.module for n, s in compare_pipelines.PIPELINES.items()} == PIPELINES
    assert set(run_kind.SIGNATURES) == set(run_kind.TRAIN_HINT) == set(REGISTRY)
    for name in REGISTRY:
        mod = pipeline_module(name)
        assert callable(mod.train) and callable(mod.evaluate) and isinstance(mod.DEFAULTS, dict)
    with pytest.raises(ValueError, match="unknown pipeline 'nope'; choose from clip"):
        pipeline_module("nope")


def test_runs_written_before_the_renames_keep_their_kind():
    assert run_kind({"model": {"name": "tiny.en"}, "trainer": {}}) == "asr"
    assert run_kind({"method": {"name": "largo"}, "trainer": {}}) == "ood"


def fake_run(path, pipeline):
    path.mkdir()
    (path / "adapter").mkdir()
    (path / "config.yaml").write_text(
        yaml.safe_dump({**_signed(SIGNATURES[pipeline]), "trainer": {}})
    )
    return path


def test_check_run_names_what_is_wrong(tmp_path):
    clip = fake_run(tmp_path / "clip", "clip")
    assert "head" in check_run(clip, "clip")
    with pytest.raises(
        ValueError, match=r"is a clip run, not a cod run; use `lorakit predict clip"
    ):
        check_run(clip, "cod")
    with pytest.raises(ValueError, match=r"use `lorakit eval clip --run"):
        check_run(clip, "cod", verb="eval")
    asr = fake_run(tmp_path / "asr", "asr")
    with pytest.raises(ValueError, match=r"is a asr run, not a ood run; use `lorakit transcribe"):
        check_run(asr, "ood")
    with pytest.raises(ValueError, match="does not exist"):
        check_run(tmp_path / "missing", "clip")
    assert not (tmp_path / "missing").exists()  # a rejected run leaves nothing behind
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.yaml is missing"):
        check_run(tmp_path / "empty", "clip")


PROBE = """
import sys
from typer.testing import CliRunner
from lorakit.apps.cli.commands import app
r = CliRunner().invoke(app, {args!r})
print(r.exit_code, "torch" in sys.modules)
print(r.output)
"""


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "cod", "--run", "{clip}", "--image", "x.png"], "is a clip run, not a cod run"),
        (["predict", "ood", "--run", "{clip}", "--image", "x.png"], "is a clip run"),
        (["predict", "clip", "--run", "{clip}", "--image", "nope.png"], "nope.png does not exist"),
        (["transcribe", "--run", "{clip}", "nope.wav"], "nope.wav do not exist"),
        (["transcribe", "--compare", "{wav}"], "--compare needs --run"),
        (["eval", "cod", "--run", "{clip}"], "lorakit eval clip"),
        (["train", "clip", "--config", "missing.yaml"], "missing.yaml does not exist"),
        (["train", "clip", "--out", "{wav}"], "is a file, not a run folder"),
    ],
)
def test_bad_arguments_fail_before_torch_loads(tmp_path, args, message):
    clip = fake_run(tmp_path / "clip", "clip")
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    args = [a.format(clip=clip, wav=wav) for a in args]
    res = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, timeout=120
    )
    first, _, output = res.stdout.partition("\n")
    assert first == "2 False", res.stdout + res.stderr
    assert message in " ".join(output.split())
