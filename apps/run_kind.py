"""Which pipeline wrote a run folder, read from its ``config.yaml`` without importing torch,
so the CLI rejects a wrong ``--run`` at once with a message that says what the run is.

Each pipeline's config has one section no other pipeline has (checked by a test against
the pipelines' ``DEFAULTS``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

# pipeline -> the config section only that pipeline has
SIGNATURES = {"clip": "head", "cod": "prompts", "asr": "model", "ood": "method", "continual": "continual"}
TRAIN_HINT = {
    "clip": "demos/clip.yaml",
    "cod": "demos/cod.yaml",
    "asr": "demos/asr.yaml",
    "ood": "demos/ood.yaml",
    "continual": "demos/continual.yaml",
}


def run_kind(cfg: dict) -> str | None:
    """The pipeline whose signature section ``cfg`` holds (``None``: none or several)."""
    found = [p for p, key in SIGNATURES.items() if key in (cfg or {})]
    return found[0] if len(found) == 1 else None


def check_run(run: Path, pipeline: str, verb: str = "predict", need_adapter: bool = True) -> dict:
    """The config of a finished ``pipeline`` run, or a one-line ``ValueError`` saying what
    is wrong (missing folder, not a run, a run of another pipeline, no adapter yet).
    ``verb`` (predict, eval) is what the message suggests doing with another pipeline's run;
    ``need_adapter=False`` accepts a run without ``adapter/`` (a zero-shot run's eval)."""
    run = Path(run)
    hint = f"lorakit train {pipeline} --config {TRAIN_HINT[pipeline]} --out {run}"
    if not run.is_dir():
        raise ValueError(f"run folder {run} does not exist; train one with `{hint}`")
    cfg_file = run / "config.yaml"
    if not cfg_file.is_file():
        raise ValueError(f"{run} is not a lorakit run folder (config.yaml is missing)")
    try:
        cfg = yaml.safe_load(cfg_file.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{cfg_file} is not valid YAML: {e}") from None
    kind = run_kind(cfg) if isinstance(cfg, dict) else None
    if kind is None:
        raise ValueError(f"{run} is not a run of any lorakit pipeline (config.yaml is unknown)")
    if kind != pipeline:
        other = "transcribe --run" if (kind, verb) == ("asr", "predict") else f"{verb} {kind} --run"
        raise ValueError(
            f"{run} is a {kind} run, not a {pipeline} run; use `lorakit {other} {run}`"
        )
    if need_adapter and not (run / "adapter").is_dir():
        raise ValueError(f"{run} has no adapter/ folder: the run has not finished training")
    return cfg
