"""The CLI answers bad input before its heavy imports (gradio, torch), and a busy port
moves the demo to the next free one."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from lorakit.apps.cli.demo import DEMOS, free_port


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_unknown_demo_is_refused_before_gradio_or_torch_is_imported():
    out = _run(
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from lorakit.apps.cli.commands import app\n"
        "r = CliRunner().invoke(app, ['demo', 'clipp'])\n"
        "print(r.exit_code, 'gradio' in sys.modules, 'torch' in sys.modules, r.output.strip())"
    )
    assert out.startswith("2 False False"), out
    assert "unknown demo 'clipp'; choose from clip, cod, asr, ood" in out


def test_the_cheap_demo_list_is_the_hubs():
    from lorakit.apps.web.hub import APPS

    assert tuple(APPS) == DEMOS


def test_a_busy_port_gives_the_next_free_one():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = free_port("127.0.0.1", port)
        assert got != port and port < got < port + 20
        with pytest.raises(ValueError, match=rf"ports {port}-{port} on 127.0.0.1 are all busy"):
            free_port("127.0.0.1", port, tries=1)
    assert free_port("127.0.0.1", got) == got


# a bad section, a bad key, a bad value type and a bad choice, one per pipeline and kind
BAD_SETS = [
    ("clip", "bogus.key=1", "unknown config section(s) ['bogus']"),
    ("clip", "optim.learning_rate=0.1", "optim: unknown key(s) ['learning_rate']"),
    ("clip", "optim.lr=fast", "optim.lr must be a number, got 'fast'"),
    ("cod", "prompts.mode=dots", "prompts.mode must be one of points, box, points+box"),
    ("cod", "loss.tau=[1]", "loss.tau must be a number, got [1]"),
    ("asr", "optim.lrr=1", "optim: unknown key(s) ['lrr']"),
    ("asr", "eval.beam_size=wide", "eval.beam_size must be an integer or null, got 'wide'"),
    ("ood", "data.kind=nope", "data.kind must be 'shift' or 'folders', got 'nope'"),
    ("ood", "trainer.precision=17", "trainer.precision '17' is unknown"),
]


@pytest.mark.parametrize("pipeline,item,message", BAD_SETS)
def test_a_bad_set_fails_in_one_line_before_torch_is_imported(tmp_path, pipeline, item, message):
    out = tmp_path / "run"
    code = (
        "import sys, time\n"
        "t0 = time.perf_counter()\n"
        "from typer.testing import CliRunner\n"
        "from lorakit.apps.cli import app\n"
        f"args = ['train', {pipeline!r}, '--config', 'demos/{pipeline}.yaml', '--set', {item!r},"
        f" '--out', {str(out)!r}]\n"
        "r = CliRunner().invoke(app, args)\n"
        "print(r.exit_code, 'torch' in sys.modules, round(time.perf_counter() - t0, 2))\n"
        "print(r.output.strip())"
    )
    t0 = time.perf_counter()
    head, *lines = _run(code).splitlines()
    wall = time.perf_counter() - t0
    code_, torch_loaded, seconds = head.split()
    assert (code_, torch_loaded) == ("2", "False"), (head, lines)
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()  # refused before anything is written
    # the CLI itself answers in well under 2 s; the bound is generous for a busy machine
    assert float(seconds) < 2 * 3 and wall < 20, (seconds, wall)


def test_help_and_a_valid_config_check_import_no_torch():
    out = _run(
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from lorakit.apps.cli import app\n"
        "from lorakit.apps.pipelines import SINGLE_TASK, pipeline_config\n"
        "from lorakit.data.vocabulary import load_pipeline_config\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0 and 'train' in r.output, r.output\n"
        "for name in SINGLE_TASK:\n"
        "    c = pipeline_config(name)\n"
        "    c.check(load_pipeline_config(f'demos/{name}.yaml', [], c.DEFAULTS, c.RENAMED"
        " if hasattr(c, 'RENAMED') else ()))\n"
        "print(sorted(m for m in ('torch', 'lightning', 'gradio') if m in sys.modules))"
    )
    assert out == "[]", out


# the adapter method's own fields (names and kinds from the torch-free method table)
BAD_METHOD_SETS = [
    ("clip", "adapter.r=x", "adapter.r must be an integer, got 'x'"),
    ("clip", "adapter.n_bands=4", "adapter: comp_lora has unknown field(s) ['n_bands']"),
    ("clip", "adapter.method=lorra", "unknown method 'lorra': adapter.method must be one of"),
    ("asr", "adapter.bogus=1", "adapter: s2_lora has unknown field(s) ['bogus']"),
    ("asr", "adapter.lora_alpha=big", "adapter.lora_alpha must be a number, got 'big'"),
    ("cod", "adapter.hyper={grid: 3}", "adapter.hyper.grid must be a list or null, got 3"),
    ("cod", "adapter.method=dora", "unknown method 'dora': adapter.method must be one of none,"),
    ("ood", "adapter.hyper={mu: fast}", "adapter.hyper.mu must be a number, got 'fast'"),
    ("ood", "adapter.method=lora", "adapter.hyper: lora has unknown field(s) ['gamma_rel', 'mu']"),
    ("continual", "adapter.r=x", "adapter.r must be an integer, got 'x'"),
    ("continual", "adapter.bogus=1", "adapter: gorp has unknown field(s) ['bogus']"),
    ("continual", "adapter.r_g=fast", "adapter.r_g must be an integer, got 'fast'"),
    ("continual", "trainer.max_steps=many", "trainer.max_steps must be an integer or null, got 'many'"),
]


@pytest.mark.parametrize("pipeline,item,message", BAD_METHOD_SETS)
def test_a_bad_method_field_fails_in_one_line_before_torch(tmp_path, pipeline, item, message):
    test_a_bad_set_fails_in_one_line_before_torch_is_imported(tmp_path, pipeline, item, message)


def test_the_method_table_is_the_registry_s():
    """data/method_table.py is generated from the config dataclasses: a method or field
    added, removed or retyped without regenerating it fails here."""
    from lorakit.data import method_fields

    assert method_fields.TABLE.read_text() == method_fields.render(), (
        "data/method_table.py is out of date: run .venv/bin/python -m lorakit.data.method_fields"
    )


def test_valid_method_fields_pass_and_a_method_registered_at_run_time_is_known():
    from dataclasses import dataclass

    from lorakit.core.methods.lora import LoRA, LoRAConfig
    from lorakit.core.registry import MethodSpec, register, unregister
    from lorakit.vision.clip.config import check_adapter

    check_adapter({"method": "fora", "n_bands": "4", "grid": [2, 2], "lora_alpha": 2})

    @dataclass
    class WideConfig(LoRAConfig):
        method = "wide_test"
        width: int = 2

    class Wide(LoRA):
        name = "wide_test"

    register(MethodSpec("wide_test", WideConfig, Wide))
    try:
        check_adapter({"method": "wide_test", "width": 3, "r": 2})
        with pytest.raises(ValueError, match=r"adapter.width must be an integer, got 'w'"):
            check_adapter({"method": "wide_test", "width": "w"})
    finally:
        unregister("wide_test")
    with pytest.raises(ValueError, match="unknown method 'wide_test'"):
        check_adapter({"method": "wide_test"})


# ``lorakit eval --set``: the stored config with the overrides must pass the light check
BAD_EVAL_SETS = [
    ("clip", "eval.batch_size=big", "eval.batch_size must be an integer, got 'big'"),
    ("clip", "data.bogus=1", "data: unknown key(s) ['bogus']"),
    ("cod", "bogus=1", "eval: unknown key(s) ['bogus']"),
    ("asr", "beam_size=wide", "eval.beam_size must be an integer or null, got 'wide'"),
    ("ood", "batch_size=x", "eval.batch_size must be an integer, got 'x'"),
    ("ood", "nothing=1", "eval: unknown key(s) ['nothing']"),
]


@pytest.mark.parametrize("pipeline,item,message", BAD_EVAL_SETS)
def test_a_bad_eval_set_fails_in_one_line_before_torch_is_imported(tmp_path, pipeline, item, message):
    run = tmp_path / "run"
    code = (
        "import sys, time, yaml\n"
        "from pathlib import Path\n"
        "from lorakit.apps.pipelines import pipeline_config\n"
        "from lorakit.data.vocabulary import load_pipeline_config\n"
        f"c = pipeline_config({pipeline!r})\n"
        f"cfg = load_pipeline_config('demos/{pipeline}.yaml', [], c.DEFAULTS, getattr(c, 'RENAMED', ()))\n"
        f"run = Path({str(run)!r}); run.mkdir(); (run / 'adapter').mkdir()\n"
        "(run / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))\n"
        "t0 = time.perf_counter()\n"
        "from typer.testing import CliRunner\n"
        "from lorakit.apps.cli import app\n"
        f"r = CliRunner().invoke(app, ['eval', {pipeline!r}, '--run', str(run), '--set', {item!r}])\n"
        "print(r.exit_code, 'torch' in sys.modules, round(time.perf_counter() - t0, 2))\n"
        "print(r.output.strip())"
    )
    head, *lines = _run(code).splitlines()
    code_, torch_loaded, seconds = head.split()
    assert (code_, torch_loaded) == ("2", "False"), (head, lines)
    assert len(lines) == 1 and message in lines[0], lines
    assert float(seconds) < 2 * 3, seconds
    assert sorted(p.name for p in run.iterdir()) == ["adapter", "config.yaml"]  # nothing written
