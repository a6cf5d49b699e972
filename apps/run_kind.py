"""Which pipeline wrote a run folder, read from its ``config.yaml`` without importing torch,
so the CLI rejects a wrong ``--run`` at once with a message that says what the run is.

Each pipeline's config has one section (or section key) no other pipeline has (checked by
a test against the pipelines' ``DEFAULTS``); runs written before the one config vocabulary
are recognized by their old section (asr: ``model``, ood: ``method``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lorakit.apps.pipelines import PIPELINES

# pipeline -> the config section (or "section.key") only that pipeline has
SIGNATURES = {name: p.signature for name, p in PIPELINES.items()}
OLD_SIGNATURES = {"asr": "model", "ood": "method"}  # runs written before the renames
TRAIN_HINT = {name: p.demo for name, p in PIPELINES.items()}


def run_kind(cfg: dict) -> str | None:
    """The pipeline whose signature section ``cfg`` holds (``None``: none or several)."""
    cfg = cfg or {}

    def has(key: str) -> bool:
        section, _, inner = key.partition(".")
        value = cfg.get(section)
        return section in cfg and (not inner or (isinstance(value, dict) and inner in value))

    found = [p for p, key in SIGNATURES.items() if has(key)]
    found = found or [p for p, key in OLD_SIGNATURES.items() if has(key)]
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
