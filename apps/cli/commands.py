"""The ``lorakit`` command line: methods, selfcheck, train, eval, and per-pipeline verbs."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import typer

from lorakit.apps.cli.help import TRAIN_EPILOG
from lorakit.apps.pipelines import PIPELINES as REGISTRY
from lorakit.apps.pipelines import pipeline_config, pipeline_module

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Low-rank adaptation for CLIP, SAM and Whisper. Sample inputs: demos/samples/; "
    "your own data and real checkpoints: `lorakit train --help` and the README.",
)

# pipeline name -> module exposing DEFAULTS, train(cfg, out) -> dict, evaluate(run, overrides)
# -> dict: read from the one registry (lorakit.apps.pipelines)
PIPELINES = {name: p.module for name, p in REGISTRY.items()}


def _pipeline(name: str):
    try:
        return pipeline_module(name)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _check_cheap(pipeline: str, config: Path | None = None, run: Path | None = None) -> None:
    """Checks that need no torch, done before a pipeline module (and torch) is imported."""
    from lorakit.apps.run_kind import check_run

    if pipeline not in PIPELINES:
        raise typer.BadParameter(
            f"unknown pipeline {pipeline!r}; choose from {', '.join(PIPELINES)}"
        )
    if config is not None and not config.is_file():
        _fail(f"config file {config} does not exist (examples: demos/*.yaml)")
    if run is not None:
        try:
            check_run(run, pipeline, verb="eval", need_adapter=False)
        except ValueError as e:
            _fail(str(e))


@app.command()
def methods(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List the adapter methods: trainable-parameter formula, mergeability, defaults."""
    from lorakit.core.table import method_rows, method_table
    from lorakit.data.weight_methods import replacement_lines

    if as_json:
        typer.echo(json.dumps(method_rows(), indent=2, default=str))
    else:
        typer.echo("\n".join([method_table(), *replacement_lines()]))


@app.command()
def selfcheck() -> None:
    """Adapt a tiny model with every method on every host it supports, and check the contract."""
    from lorakit.apps.cli.selfcheck import run_selfcheck

    ok = run_selfcheck(echo=typer.echo)
    raise typer.Exit(0 if ok else 1)


def _trainer_overrides(accelerator, devices, nodes, strategy, precision, max_steps) -> list[str]:
    out = []
    for key, val in (
        ("accelerator", accelerator),
        ("devices", devices),
        ("nodes", nodes),
        ("strategy", strategy),
        ("precision", precision),
        ("max_steps", max_steps),
    ):
        if val is not None:
            out.append(f"trainer.{key}={val}")
    return out


@app.command(epilog=TRAIN_EPILOG)
def train(
    pipeline: str = typer.Argument(..., help="clip | cod | asr | ood | continual"),
    config: Path = typer.Option(None, "--config", "-c", help="YAML run config"),
    set_: list[str] = typer.Option([], "--set", help="override: key.sub=value (repeatable)"),
    out: Path = typer.Option(None, "--out", "-o", help="run folder (default runs/<pipeline>)"),
    accelerator: str = typer.Option(
        None, help="auto | cpu | gpu (gpu needs a visible CUDA device) (trainer.accelerator)"
    ),
    devices: str = typer.Option(
        None, help="processes per node: 1, 2, ... or auto; >1 trains with DDP (trainer.devices)"
    ),
    nodes: int = typer.Option(None, help="number of machines (multi-node DDP) (trainer.nodes)"),
    strategy: str = typer.Option(
        None, help="auto | ddp | ddp_spawn | fsdp | ... (Lightning's names) (trainer.strategy)"
    ),
    precision: str = typer.Option(
        None,
        help="32-true | bf16-mixed (CPU and GPU) | 16-mixed (GPU only); adapters are saved "
        "in fp32 (trainer.precision)",
    ),
    max_steps: int = typer.Option(None, help="optimizer steps (trainer.max_steps)"),
) -> None:
    """Train an adapter; writes config.yaml, metrics.json, adapter/, plots/ into the run folder.

    Re-running the same command resumes from RUN/checkpoints/last.ckpt (after a crash or
    kill) and ends exactly where an uninterrupted run ends; metrics.json then records
    resumed_from_step. The config is checked before anything is generated or written.
    Your own data and real checkpoints: README sections "Your own data" and "Real
    checkpoints and GPUs" (e.g. --set backbone.name=ViT-B-16 --set backbone.pretrained=openai).
    """
    import shutil

    from lorakit.data.runs import check_folder

    _check_cheap(pipeline, config=config)
    out = out or Path("runs") / pipeline
    try:
        check_folder(out)
    except ValueError as e:
        _fail(str(e))

    existed = out.exists()
    try:
        overrides = list(set_) + _trainer_overrides(
            accelerator, devices, nodes, strategy, precision, max_steps
        )
        cfg = _checked_config(pipeline, config, overrides)
        mod = _pipeline(pipeline)  # torch and the pipeline load only for a valid config
        metrics = mod.train(cfg, out)
    except (ValueError, OSError) as e:
        if not existed and out.is_dir() and not (out / "checkpoints").is_dir():
            shutil.rmtree(out, ignore_errors=True)  # a rejected run leaves nothing behind
        _fail(_one_line(e, out))
    typer.echo(json.dumps(metrics, indent=2, default=str))


def _checked_config(pipeline: str, config: Path | None, overrides: list[str]) -> dict:
    """Defaults < file < overrides, checked by the pipeline's light config module (no torch):
    a bad section, key or value is refused within a second of starting."""
    from lorakit.data.vocabulary import load_pipeline_config

    try:
        conf = pipeline_config(pipeline)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    # old section names (asr: model, train; ood: method) are read with a one-line notice
    cfg = load_pipeline_config(config, overrides, conf.DEFAULTS, getattr(conf, "RENAMED", ()))
    if hasattr(conf, "check"):
        conf.check(cfg)
    return cfg


def _check_eval_cheap(pipeline: str, run: Path, overrides: dict) -> None:
    """``eval --set`` checked by the pipeline's light config module (no torch): the stored
    config with the overrides applied must pass the same ``check`` as a training config.
    A stored config that does not pass it on its own (a run of an older release) is left to
    the pipeline."""
    import copy

    from lorakit.data.runs import RunFolder
    from lorakit.data.vocabulary import upgrade_config

    conf = pipeline_config(pipeline)
    if not (hasattr(conf, "check") and hasattr(conf, "eval_config")):
        return
    stored = RunFolder.existing(run).read_config()
    try:
        stored = upgrade_config(stored, getattr(conf, "RENAMED", ()), str(run / "config.yaml"))
        conf.check(copy.deepcopy(stored))
    except ValueError:
        return
    cfg, _ = conf.eval_config(stored, dict(overrides))
    conf.check(cfg)


def _one_line(e: Exception, out: Path, kept: str = "the last good checkpoint, if any,") -> str:
    """A user-caused error as one line; an OSError (a full disk while writing a plot, a log
    or generated data) names its file (else the run folder) and says what is kept."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        from lorakit.core.io import write_error

        e = write_error(e.filename or f"a file in {out}", e, kept)
    elif isinstance(e, OSError):
        return f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
    return str(e).splitlines()[0] if str(e) else type(e).__name__


@app.command("eval")
def evaluate(
    pipeline: str = typer.Argument(..., help="clip | cod | asr | ood"),
    run: Path = typer.Option(..., "--run", "-r", help="run folder written by `lorakit train`"),
    set_: list[str] = typer.Option([], "--set", help="evaluation override: key=value"),
    suite: str = typer.Option(None, help="ood: evaluation suite name"),
) -> None:
    """Recompute a run's metrics from its saved adapter; writes RUN/eval/<suite>.json
    (eval/all.json unless --suite names one)."""
    from lorakit.data.runs import parse_value

    _check_cheap(pipeline, run=run)
    bad = [s for s in set_ if "=" not in s]
    if bad:
        _fail(f"--set expects key=value, got {bad[0]!r}")
    overrides = {k.strip(): parse_value(v) for k, v in (s.split("=", 1) for s in set_)}
    if suite is not None:
        overrides["suite"] = suite
    try:
        _check_eval_cheap(pipeline, run, overrides)
    except ValueError as e:
        _fail(_one_line(e, run, "the run"))
    mod = _pipeline(pipeline)  # torch and the pipeline load only for valid overrides
    try:
        metrics = mod.evaluate(run, overrides)
    except (ValueError, OSError) as e:
        _fail(_one_line(e, run, "the run"))
    typer.echo(json.dumps(metrics, indent=2, default=str))


def _register_extras() -> None:
    """Pipeline-specific verbs (transcribe, predict, demo, bench) live in their own modules."""
    extras = ("asr", "predict", "demo", "bench", "reproduce", "squeeze", "compare", "generate")
    for name in extras:
        try:
            mod = importlib.import_module(f"lorakit.apps.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"lorakit.apps.cli.{name}":
                continue
            raise
        mod.register(app)


_register_extras()


def main() -> None:
    app(prog_name="lorakit")


if __name__ == "__main__":
    sys.exit(main())
