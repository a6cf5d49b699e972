"""``lorakit predict cod --run DIR --image x.jpg --out DIR``: mask and overlay PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _point(text: str, label: int) -> list:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"a point is x,y (pixels), got {text!r}") from None
    return [x, y, label]


def register(app: typer.Typer) -> None:
    predict = typer.Typer(help="Predict with a trained run.", no_args_is_help=True)

    @predict.command("cod")
    def cod(
        run: Path = typer.Option(..., "--run", "-r", help="run folder from `lorakit train cod`"),
        image: Path = typer.Option(..., "--image", "-i", help="image file (jpg/png)"),
        out: Path = typer.Option(Path("predictions"), "--out", "-o", help="output folder"),
        point: list[str] = typer.Option([], "--point", help="foreground point x,y (repeatable)"),
        bg_point: list[str] = typer.Option(
            [], "--bg-point", help="background point x,y (repeatable)"
        ),
        box: str = typer.Option(
            None, "--box", help="box x0,y0,x1,y1 (default: whole image if no points)"
        ),
    ) -> None:
        """Segment the camouflaged object in one image; writes <stem>_mask.png and <stem>_overlay.png."""
        from lorakit.vision.sam.predict import predict_file

        points = [_point(p, 1) for p in point] + [_point(p, 0) for p in bg_point]
        bx = None
        if box is not None:
            try:
                bx = [float(v) for v in box.split(",")]
                assert len(bx) == 4
            except (ValueError, AssertionError):
                raise typer.BadParameter(f"--box is x0,y0,x1,y1, got {box!r}") from None
        try:
            result = predict_file(run, image, out, points or None, bx)
        except ValueError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        typer.echo(json.dumps(result, indent=2))

    app.add_typer(predict, name="predict")
