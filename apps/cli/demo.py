"""``lorakit demo [clip|cod|asr|ood]``: start the hub (or one app) on this machine.

lorakit demo                      # hub on http://127.0.0.1:7860; the pre-made runs ship with lorakit
lorakit demo --rebuild            # train the pre-made runs again (progress and ETA per phase)
lorakit demo asr --port 7861      # one app
lorakit demo --host 0.0.0.0 --share-lan   # reachable from the local network (explicit opt-in)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path

import typer

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DEMOS = ("clip", "cod", "asr", "ood")  # app_hub.APPS's keys, checked before gradio is imported


def check_name(name: str | None) -> None:
    if name is not None and name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose from {', '.join(DEMOS)}")


def free_port(host: str, port: int, tries: int = 20) -> int:
    """``port`` if nothing listens there, else the next free one (up to ``tries`` ports on);
    ``ValueError`` in one line when all are busy."""
    for p in range(port, port + tries):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, p))
            except OSError:
                continue
            return p
    raise ValueError(f"ports {port}-{port + tries - 1} on {host} are all busy; give --port")


def check_host(host: str, share_lan: bool) -> None:
    """Binding beyond localhost needs ``--share-lan``; raises ``ValueError`` otherwise."""
    if host not in LOCAL_HOSTS and not share_lan:
        raise ValueError(
            f"--host {host} would expose the demo beyond this machine; add --share-lan "
            "to do that on purpose (the demo has no login)"
        )


def serve(
    name: str | None,
    host: str,
    port: int,
    runs: Path | None,
    profile_name: str,
    block: bool = True,
    rebuild: bool = False,
):
    """Build the context and page, launch it; returns the Blocks (``block=False``: running)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from lorakit.apps.web.common import runs_root, served_paths, theme
    from lorakit.apps.web.hub import APPS, build_hub, build_single, make_context, needed_runs

    check_name(name)
    root = runs_root(runs)
    keys = needed_runs([name] if name else list(APPS))
    ctx = make_context(root, profile_name, background=True, keys=keys, rebuild=rebuild)
    demo = build_single(ctx, name) if name else build_hub(ctx)
    demo.queue(default_concurrency_limit=2)
    typer.echo(
        f"pre-made runs: {root} ("
        + ("trained again in the background" if rebuild else "installed from lorakit's own")
        + "; one line per run below, the URL last)"
    )
    demo.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        show_error=False,
        footer_links=["api", "gradio"],
        quiet=False,
        **served_paths(root, ctx.specs),
        theme=theme(),
    )
    announce_when_ready(ctx.status, demo.local_url)
    if block:
        demo.block_thread()
    return demo


def announce_when_ready(status, url: str, echo=typer.echo) -> threading.Thread:
    """Once every pre-made run is built (or cached), print one line with the URL, so that
    the URL is the terminal's last line and not buried under the build's lines."""

    def wait() -> None:
        status.done.wait()
        echo(f"pre-made runs: {status.summary()}. The hub is ready at {url}")

    thread = threading.Thread(target=wait, daemon=True, name="lorakit-ready")
    thread.start()
    return thread


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        name: str = typer.Argument(
            None, help="clip | cod | asr | ood (default: the hub with all four)"
        ),
        host: str = typer.Option("127.0.0.1", help="address to bind"),
        port: int = typer.Option(7860, help="port"),
        share_lan: bool = typer.Option(False, "--share-lan", help="allow binding beyond localhost"),
        runs: Path = typer.Option(
            None, help="pre-made runs folder (default ~/.cache/lorakit/runs)"
        ),
        profile: str = typer.Option("demo", help="pre-made run sizes: demo | tiny"),
        rebuild: bool = typer.Option(
            False,
            "--rebuild",
            help="train the pre-made runs again instead of using the ones lorakit ships",
        ),
    ) -> None:
        """Start the Gradio demo hub (or one app) on the pre-made runs shipped with lorakit."""
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        for noisy in ("httpx", "matplotlib"):  # gradio's own requests, a first font cache
            logging.getLogger(noisy).setLevel(logging.WARNING)
        try:
            check_host(host, share_lan)
            check_name(name)
            free = free_port(host, port)
            if free != port:
                typer.echo(f"port {port} is busy; using {free}")
            serve(name, host, free, runs, profile, rebuild=rebuild)
        except ValueError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
