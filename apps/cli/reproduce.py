"""``lorakit reproduce <recipe> ...``: paper-protocol runs on real checkpoints and datasets.

    lorakit reproduce clip-lora --data-root /data/coop --checkpoint /models/ViT-B-16.pt
    lorakit reproduce clip-lora --help          # the recipe's own options

The recipe names and their modules are in ``apps/cli/recipes.py``; everything after the
recipe name is handed to the recipe's ``cli(argv)``, which checks its inputs up front.
"""

from __future__ import annotations

import importlib

import typer

from lorakit.apps.cli import recipe as recipe_cli
from lorakit.apps.cli.recipes import RECIPES


def register(app: typer.Typer) -> None:
    @app.command(
        "reproduce",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                          "help_option_names": []},
        help="Paper-protocol recipes for real checkpoints: " + ", ".join(sorted(RECIPES))
        + ". `lorakit reproduce RECIPE --help` lists a recipe's options.",
    )
    def reproduce(ctx: typer.Context, recipe: str = typer.Argument(None)) -> None:
        if recipe in (None, "--help", "-h"):
            typer.echo(f"usage: lorakit reproduce RECIPE [options]; recipes: {', '.join(sorted(RECIPES))}")
            raise typer.Exit(0)
        if recipe not in RECIPES:
            typer.secho(
                f"error: unknown recipe {recipe!r}; known: {', '.join(sorted(RECIPES))}",
                fg=typer.colors.RED, err=True,
            )
            raise typer.Exit(2)
        mod = importlib.import_module(RECIPES[recipe])
        try:
            if hasattr(mod, "cli"):
                mod.cli(list(ctx.args))
            else:
                recipe_cli.cli(f"lorakit reproduce {recipe}", mod, list(ctx.args))
        except ValueError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
