"""``lorakit predict cod|clip|ood``: use a trained run on one image.

    lorakit predict cod --run runs/cod --image demos/samples/scene.png --out runs/cod/pred
    lorakit predict clip --run runs/clip --image demos/samples/red_circle.png
    lorakit predict ood --run runs/ood --image demos/samples/triangle.png --corruption fog --severity 3

Arguments and the run folder are checked before torch is imported, so a mistake is
reported at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lorakit.apps.run_kind import check_run


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _point(text: str, label: int) -> list:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"a point is x,y (pixels), got {text!r}") from None
    return [x, y, label]


def _box(text: str | None) -> list | None:
    if text is None:
        return None
    try:
        bx = [float(v) for v in text.split(",")]
    except ValueError:
        bx = []
    if len(bx) != 4:
        raise typer.BadParameter(f"--box is x0,y0,x1,y1, got {text!r}")
    return bx


def _check(run: Path, pipeline: str, image: Path) -> None:
    try:
        check_run(run, pipeline)
    except ValueError as e:
        _fail(str(e))
    if not image.is_file():
        _fail(f"image {image} does not exist (samples: demos/samples/*.png)")


RUN_HELP = "run folder from `lorakit train {}`"
IMAGE_HELP = "image file (png/jpg); samples in demos/samples/"


def _print(predict_file, *args) -> None:
    """Run one pipeline's ``predict_file`` and print its result as JSON; one line on error."""
    try:
        result = predict_file(*args)
    except ValueError as e:
        _fail(str(e))
    typer.echo(json.dumps(result, indent=2))


def predict_cod(
    run: Path = typer.Option(..., "--run", "-r", help=RUN_HELP.format("cod")),
    image: Path = typer.Option(..., "--image", "-i", help=IMAGE_HELP),
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
    points = [_point(p, 1) for p in point] + [_point(p, 0) for p in bg_point]
    bx = _box(box)
    _check(run, "cod", image)
    from lorakit.vision.sam.predict import predict_file

    _print(predict_file, run, image, out, points or None, bx)


def predict_clip(
    run: Path = typer.Option(..., "--run", "-r", help=RUN_HELP.format("clip")),
    image: Path = typer.Option(..., "--image", "-i", help=IMAGE_HELP),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="classes to show"),
) -> None:
    """Top-k classes of one image: the adapted run vs the zero-shot CLIP."""
    _check(run, "clip", image)
    from lorakit.vision.clip.predict import predict_file

    _print(predict_file, run, image, top_k)


def predict_ood(
    run: Path = typer.Option(..., "--run", "-r", help=RUN_HELP.format("ood")),
    image: Path = typer.Option(..., "--image", "-i", help=IMAGE_HELP),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="classes to show"),
    corruption: str = typer.Option(
        None, help="corrupt the image first (gaussian_noise, fog, ...; see lorakit eval ood)"
    ),
    severity: int = typer.Option(0, min=0, max=5, help="corruption severity 1-5 (0: clean)"),
) -> None:
    """Top-k classes of one image: the fine-tuned run vs the pretrained model it started from."""
    if severity and not corruption:
        raise typer.BadParameter("--severity needs --corruption")
    _check(run, "ood", image)
    from lorakit.vision.ood.predict import predict_file

    _print(predict_file, run, image, top_k, corruption, severity or 0)


def register(app: typer.Typer) -> None:
    predict = typer.Typer(
        help="Use a trained run on one image: cod (mask), clip and ood (top-k classes).",
        no_args_is_help=True,
    )
    predict.command("cod")(predict_cod)
    predict.command("clip")(predict_clip)
    predict.command("ood")(predict_ood)
    app.add_typer(predict, name="predict")
