"""``lorakit squeeze RUN --rank k``: LoRA-Squeeze, post-hoc compression of a trained adapter.

``RUN`` is a run folder (written by ``lorakit train <pipeline>``: its ``adapter/`` is
compressed) or an adapter folder itself. Any mergeable adapter is replaced by a plain
rank-``k`` LoRA (randomised SVD of each slot's ``dW``; ``lorakit.core.squeeze``). The
original is never touched: the result is a new run folder (default ``RUN-r<k>``, with the
run's ``config.yaml``, so ``lorakit eval <pipeline> --run RUN-r<k>`` evaluates it, and a
``squeeze.json`` report) or, for an adapter folder, a new adapter folder. Everything is
built beside the target and renamed into place, so a failed squeeze leaves nothing.
An adapter whose file leaves out what the base determines (Comp-LoRA's SVD basis) is read
from the run's model, rebuilt by its pipeline (``adapted_model``), not from the file alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import typer

from lorakit.data.weight_methods import is_replacement


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _adapted(run: Path):
    """A loader of the run's adapted model (its pipeline's ``adapted_model``), or None."""
    import yaml

    from lorakit.apps.pipelines import pipeline_module
    from lorakit.apps.run_kind import run_kind

    cfg_file = run / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text()) if cfg_file.is_file() else None
    kind = run_kind(cfg) if isinstance(cfg, dict) else None
    load = getattr(pipeline_module(kind), "adapted_model", None) if kind else None
    return None if load is None else (lambda: load(run))


def squeeze_run(run: Path, rank: int, out: Path | None = None) -> tuple[Path, dict]:
    """Compress ``run`` (a run or adapter folder) to rank ``rank``; returns (output, report)."""
    from lorakit.core.squeeze import squeeze_adapter

    run = Path(run)
    if (run / "adapter_config.json").is_file():  # an adapter folder
        out = out or run.with_name(f"{run.name}-r{rank}")
        return out, squeeze_adapter(run, out, rank)
    if not (run / "adapter" / "adapter_config.json").is_file():
        raise ValueError(f"{run} is neither a run folder with adapter/ nor an adapter folder")
    method = json.loads((run / "adapter" / "adapter_config.json").read_text()).get("method")
    if is_replacement(method):
        raise ValueError(f"{run} is a {method} run: its weights were replaced, there is no "
                         "adapter to squeeze")
    out = out or run.with_name(f"{run.name}-r{rank}")
    if out.exists():
        raise ValueError(f"{out} exists; pass --out to choose another output")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        report = squeeze_adapter(run / "adapter", tmp / "adapter", rank, _adapted(run))
        if (run / "config.yaml").is_file():
            shutil.copy2(run / "config.yaml", tmp / "config.yaml")
        report["source_run"] = str(run.resolve())
        (tmp / "squeeze.json").write_text(json.dumps(report, indent=2))
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, report


def register(app: typer.Typer) -> None:
    @app.command("squeeze")
    def squeeze(
        run: Path = typer.Argument(..., help="run folder (with adapter/) or adapter folder"),
        rank: int = typer.Option(..., "--rank", help="target rank k of the compressed LoRA"),
        out: Path = typer.Option(None, "--out", help="new folder (default: RUN-r<k>)"),
    ) -> None:
        """Compress a trained mergeable adapter to a plain rank-k LoRA (randomised SVD)."""
        try:
            dst, report = squeeze_run(run, rank, out)
        except ValueError as e:
            _fail(str(e))
        errors = list(report["relative_error"].values())
        typer.echo(
            f"squeezed {report['from_method']} -> lora r={rank} in {dst} "
            f"({len(errors)} slots; relative error of dW: mean {sum(errors) / len(errors):.3g}, "
            f"max {max(errors):.3g})"
        )
