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
