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

    _register_size(bench)
    app.add_typer(bench, name="bench")


def _register_size(bench: typer.Typer) -> None:
    @bench.command("size")
    def size(
        out: Path = typer.Option(
            Path("runs/bench"), help="folder for bench_size_<device>.json/.md/.png"
        ),
        models: str = typer.Option(
            "clip,sam,vit,whisper", help="comma-separated: clip, sam (1024 px), vit, whisper"
        ),
        batch: int = typer.Option(
            0, help="batch size for every model (0: clip 8, sam 1, vit 8, whisper 4)"
        ),
        steps: int = typer.Option(
            2, help="training steps per variant (time: median after the first)"
        ),
        rank: int = typer.Option(4, help="LoRA rank (alpha = rank), lorakit and PEFT alike"),
        device: str = typer.Option("cpu", help="cpu or cuda[:N]"),
        tiny: bool = typer.Option(
            False, help="the same architectures at a tiny size: checks the command in seconds"
        ),
        precision: str = typer.Option(
            "32", help="32, or bf16-mixed (the forward pass under bfloat16 autocast)"
        ),
        malloc_default: bool = typer.Option(
            False,
            "--malloc-default",
            help="CPU: keep glibc's growing mmap threshold (peak RSS then includes freed "
            "blocks the heap keeps); default: a fixed 128 KiB threshold",
        ),
    ) -> None:
        """One training step of each real-size model: peak memory and time, with and without
        activation checkpointing, lorakit LoRA next to PEFT LoRA (one fresh process each)."""
        from .bench_size import run

        names = tuple(m.strip() for m in models.split(",") if m.strip())
        try:
            run(
                out, names, batch or None, steps, rank, tiny, device, typer.echo,
                malloc_default, precision,
            )  # fmt: skip
        except (ValueError, RuntimeError) as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
