"""``lorakit bench``: benchmarks that measure side by side in one run (never timed tests)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    bench = typer.Typer(
        help="Benchmarks (ratios measured side by side in one run).", no_args_is_help=True
    )

    @bench.command("core")
    def core(
        out: Path = typer.Option(Path("runs/bench"), help="folder for bench_core.json / .txt"),
        rounds: int = typer.Option(5, help="timed rounds per variant (round-robin)"),
        image: int = typer.Option(224, help="ViT input size (224 = ViT-B/16's 197 tokens)"),
        batch: int = typer.Option(2, help="ViT batch size"),
    ) -> None:
        """Training-step time of every method vs PEFT LoRA (r=8), merged inference vs base."""
        from lorakit.apps.cli.bench_core import run

        run(out, rounds=rounds, image=image, batch=batch, echo=typer.echo)

    app.add_typer(bench, name="bench")
