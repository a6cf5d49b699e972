"""The CLI answers bad input before its heavy imports (gradio, torch), and a busy port
moves the demo to the next free one."""

from __future__ import annotations

import socket
import subprocess
import sys

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
