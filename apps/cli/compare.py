"""``lorakit compare``: methods side by side on one pipeline (same budget, lr sweep, seeds)."""

from __future__ import annotations

from pathlib import Path

import typer

COMPARE_HELP = """Compare adapter methods on a pipeline's offline example, fairly.

Every method trains under the same step budget with the same learning-rate sweep, over
several seeds; the lr is chosen per method on a VALIDATION split (never on test), and the
test metric of that lr is reported as mean and 95 % t-interval over seeds, with the
difference to LoRA, trainable parameters, median ms/step and peak memory. Each method uses
its registry defaults (`lorakit methods`); change a size with --method-set. Writes
OUT/compare.csv, compare.md, compare.png, metrics.json. Re-running the same command skips
finished runs.

  lorakit compare --pipeline clip --methods lora,vera,loldu --config demos/clip.yaml \\
      --steps 60 --lrs 1e-3,3e-3,1e-2 --seeds 0,1,2 --out runs/compare-clip
"""


def register(app: typer.Typer) -> None:
    @app.command(help=COMPARE_HELP)
    def compare(
        pipeline: str = typer.Option(..., "--pipeline", "-p", help="clip | cod | asr | ood"),
        methods: str = typer.Option(
            ..., "--methods", "-m", help="comma-separated registry names, or all"
        ),
        config: Path = typer.Option(None, "--config", "-c", help="YAML run config (demos/*.yaml)"),
        set_: list[str] = typer.Option([], "--set", help="override for every run: key.sub=value"),
        method_set: list[str] = typer.Option(
            [], "--method-set", help="override for one method: METHOD:key.sub=value"
        ),
        lrs: str = typer.Option(
            None, help="learning rates swept for every method (default: config lr /3, x1, x3)"
        ),
        seeds: str = typer.Option("0,1,2", help="comma-separated seeds (trainer.seed)"),
        steps: int = typer.Option(None, help="optimizer steps per run (trainer.max_steps)"),
        out: Path = typer.Option(None, "--out", "-o", help="folder (default runs/compare-PIPELINE)"),
        metric: str = typer.Option(None, help="test metric to report (default: the pipeline's)"),
        caption: str = typer.Option("", help="a sentence added to the table and plot titles"),
    ) -> None:
        import logging

        from lorakit.apps.compare.run import make_plan, run_plan

        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-run banners
        from lorakit.apps.compare.report import markdown, write_report

        try:
            plan = make_plan(
                pipeline, methods, config=config, sets=list(set_), method_sets=list(method_set),
                lrs=lrs, seeds=seeds, steps=steps, out=out, metric=metric,
            )
        except ValueError as e:
            typer.secho(f"error: {str(e).splitlines()[0]}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        n = len(plan.runs())
        typer.echo(
            f"compare {pipeline}: {len(plan.methods)} methods x {len(plan.lrs)} lrs x "
            f"{len(plan.seeds)} seeds = {n} runs -> {plan.out}"
        )
        try:
            records = run_plan(plan, echo=lambda s: typer.echo(s, err=True))
        except ValueError as e:
            typer.secho(f"error: {str(e).splitlines()[0]}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        rows = write_report(plan, records, caption)
        typer.echo(markdown(plan, rows, caption))
        typer.echo(f"wrote {plan.out}/compare.md, compare.csv, compare.png, metrics.json")
