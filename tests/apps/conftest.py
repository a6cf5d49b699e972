"""Fixtures for the app tests: tiny pre-made runs (built once per session), a running hub,
and headless Chromium driven by Playwright (browser tests only)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """The ``tiny`` profile's runs, trained once (``LORAKIT_TEST_RUNS`` reuses a folder)."""
    from lorakit.apps.web.prebuilt import BuildStatus, ensure_runs, profile

    root = Path(os.environ.get("LORAKIT_TEST_RUNS") or tmp_path_factory.mktemp("runs"))
    specs = profile("tiny", root)
    status = ensure_runs(root, specs, BuildStatus())
    failed = {k: r["message"] for k, r in status.snapshot().items() if r["state"] == "failed"}
    assert not failed, f"pre-made tiny runs failed: {failed}"
    return root, specs, status


@pytest.fixture(scope="session")
def hub(tiny_runs):
    """The hub page served on a free local port; yields ``(url, ctx)``."""
    from lorakit.apps.web.common import DemoContext, served_paths, theme
    from lorakit.apps.web.hub import build_hub

    root, specs, status = tiny_runs
    ctx = DemoContext(root, specs, status)
    demo = build_hub(ctx)
    demo.queue(default_concurrency_limit=2)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **served_paths(root, ctx.specs),
        theme=theme(),
    )
    yield f"http://127.0.0.1:{port}/", ctx
    demo.close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def shots(request, tmp_path):
    """Folder for this test's screenshots (``LORAKIT_SHOTS`` also copies them there)."""
    out = tmp_path / "screenshots"
    out.mkdir()
    yield out
    keep = os.environ.get("LORAKIT_SHOTS")
    if keep:
        dest = Path(keep) / request.node.name
        shutil.copytree(out, dest, dirs_exist_ok=True)
