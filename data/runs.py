"""The run folder format and the Lightning trainer every pipeline shares.

A run writes one folder::

    run/
      config.yaml        the resolved config (defaults < file < --set overrides)
      metrics.json       headline metrics under plain names (accuracy, wer, ...)
      adapter/           save_adapter() output
      plots/*.png        pictures a person can look at
      checkpoints/       Lightning checkpoints (last.ckpt is the resume point,
                         previous.ckpt the one before it)
      logs/              CSV logs (metrics.csv, continued across resumes)

Checkpoints and JSON files are written atomically (temporary file, then rename), so a
crash never leaves a half-written file; training resumes from ``checkpoints/last.ckpt``.

Resuming (``open_run``): re-running into a run folder continues that run, so the config must
be the saved one; only the keys in ``RESUME_MAY_DIFFER`` (resume itself, the progress bar,
a longer ``max_steps``) may differ. Any other difference is refused before anything is
written, naming the keys (``check_same_config``); ``trainer.resume: false`` starts the
folder over (its checkpoints and results are removed, generated data is kept).
"""

from __future__ import annotations

import copy
import json
import math
import os
import threading
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from . import run_lock
from .audio_config import scene_defaults

# --------------------------------------------------------------------------- config


def parse_value(text: str) -> Any:
    """``--set key=value`` values are YAML scalars/lists: 3, 1e-3, true, [q, v], none."""
    return yaml.safe_load(text)


def deep_update(base: dict, new: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = v
    return out


def set_dotted(cfg: dict, key: str, value: Any) -> None:
    node = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p, {}), dict):
            raise ValueError(f"--set {key}: {p!r} is not a section of the config")
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def load_config(
    path: str | os.PathLike | None, overrides: list[str] = (), defaults: dict | None = None
) -> dict:
    """Defaults, then the YAML file, then ``key.sub=value`` overrides; unknown top-level
    keys (not in ``defaults``) raise ``ValueError`` naming them."""
    cfg = copy.deepcopy(defaults or {})
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"config file {p} is not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {p} must hold a mapping, got {type(loaded).__name__}")
        cfg = deep_update(cfg, loaded)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        set_dotted(cfg, key.strip(), parse_value(value))
    if defaults:
        unknown = sorted(set(cfg) - set(defaults))
        if unknown:
            raise ValueError(f"unknown config section(s) {unknown}; valid: {sorted(defaults)}")
    return cfg


def dataclass_from(cls, section: dict, where: str):
    """Build a config dataclass from a dict, naming unknown keys."""
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - valid)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {sorted(valid)}")
    return cls(**section)


# --------------------------------------------------------------------------- files


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file, then rename it over ``path``. A failed write (a
    full disk) is one ``ValueError`` line naming ``path``; ``path`` keeps its old content."""
    from lorakit.core.io import write_error

    path = Path(path)
    # per thread too: two requests of one server writing the same file must not share it
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()
    return v


def read_json(path: str | os.PathLike, what: str):
    """Parse a JSON file; a missing or malformed file is a ``ValueError`` naming ``what``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None


def write_json(path: str | os.PathLike, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_jsonable, sort_keys=False) + "\n")


# Keys that may differ when a run is resumed: display, resume itself, and a longer run
# (max_steps: a finished run continues to the new step count).
RESUME_MAY_DIFFER = ("trainer.resume", "trainer.progress", "trainer.max_steps")
# recomputing activations changes memory, not results; runs saved before the key resume too
RESUME_MAY_DIFFER += ("trainer.activation_checkpointing",)
# the quantized base's matmul kernel (torch or bitsandbytes) multiplies by the same codes
RESUME_MAY_DIFFER += ("backbone.quantize.backend",)
# keys added after runs were saved: a saved config without one resumes when the new value
# is this default (the behaviour the run had), e.g. the recording-scene augmentations (off)
ADDED_LATER: dict = dict(scene_defaults())


def _flat(cfg, prefix: str = "") -> dict:
    if not isinstance(cfg, dict):
        return {prefix: cfg}
    out = {}
    for k, v in cfg.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def check_same_config(saved: dict, new: dict, where) -> None:
    """Refuse to resume a run under another config: one line naming the differing keys."""
    a, b = _flat(saved or {}), _flat(new or {})
    diff = sorted(
        k
        for k in set(a) | set(b)
        if a.get(k) != b.get(k)
        and k not in RESUME_MAY_DIFFER
        and not (k not in a and k in ADDED_LATER and b[k] == ADDED_LATER[k])
    )
    if diff:
        shown = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in diff[:6])
        more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
        raise ValueError(
            f"run {where} was started with another config: {shown}{more}; re-run with its "
            "config, choose another --out, or --set trainer.resume=false to start over"
        )


class RunFolder:
    """Paths of one run; creates them on demand."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        check_folder(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def existing(cls, path: str | os.PathLike) -> RunFolder:
        """A run folder opened for reading: nothing is created in it."""
        run = cls.__new__(cls)
        run.path = Path(path)
        return run

    adapter = property(lambda self: self.path / "adapter")
    plots = property(lambda self: self._dir("plots"))
    checkpoints = property(lambda self: self._dir("checkpoints"))
    logs = property(lambda self: self._dir("logs"))
    config_file = property(lambda self: self.path / "config.yaml")
    metrics_file = property(lambda self: self.path / "metrics.json")

    def _dir(self, name: str) -> Path:
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_config(self, cfg: dict) -> None:
        """Write ``config.yaml``; a resumed run must have the config it started with
        (:func:`check_same_config`), else nothing is written and a ValueError names the
        differing keys."""
        text = yaml.safe_dump(cfg, sort_keys=False)
        resume = (cfg.get("trainer") or {}).get("resume", True)
        if resume and self.config_file.is_file():
            check_same_config(read_saved_config(self.config_file), yaml.safe_load(text), self.path)
        atomic_write_text(self.config_file, text)

    def read_config(self) -> dict:
        if not self.config_file.is_file():
            raise ValueError(f"{self.path} is not a lorakit run folder: config.yaml is missing")
        return read_saved_config(self.config_file)

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.metrics_file, metrics)

    def read_metrics(self) -> dict:
        return json.loads(self.metrics_file.read_text()) if self.metrics_file.is_file() else {}

    @property
    def last_checkpoint(self) -> Path | None:
        p = self.path / "checkpoints" / "last.ckpt"
        return p if p.is_file() else None


# --------------------------------------------------------------------------- resume

# What a run writes (removed when trainer.resume is false); generated data is kept.
RUN_OUTPUTS = (
    "checkpoints", "logs", "adapter", "plots", "rounds", "distilled", "export", "tasks",
    "state", "metrics.json", "ranks.json", "before.json", "matrix.csv", "metrics_*.json",
    "eval_*.json", "per_class*.csv",
)  # fmt: skip


def check_folder(path: Path) -> None:
    """``path`` is a folder or does not exist yet (``--out`` naming a file is refused)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a run folder: give a folder path")


def read_saved_config(path: Path) -> dict:
    try:
        cfg = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path} is not valid YAML ({reason})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} must hold a mapping, got {type(cfg).__name__}")
    return cfg


def check_resume(out: str | os.PathLike, cfg: dict, resume: bool = True) -> None:
    """Reads only: refuse ``--out`` naming a file, and a resume whose ``cfg`` (as it would
    be written to ``config.yaml``) differs from the saved one outside ``RESUME_MAY_DIFFER``.
    """
    path = Path(out)
    check_folder(path)
    saved_file = path / "config.yaml"
    if not resume or not saved_file.is_file():
        return
    new = yaml.safe_load(yaml.safe_dump(cfg, sort_keys=False))  # as config.yaml would hold it
    check_same_config(read_saved_config(saved_file), new, path)


def start_over(path: Path) -> None:
    """Remove what an earlier run in ``path`` wrote (only in a lorakit run folder)."""
    import shutil

    if not (path / "config.yaml").is_file():
        return
    for pattern in RUN_OUTPUTS:
        for old in path.glob(pattern):
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)


def remove_stale_temps(path: Path) -> None:
    """Temporary files a killed write left anywhere in the run folder: hidden files named
    ``.<name>[.<pid>].tmp`` or ``.<name>.tmp.<ext>`` (checkpoints, JSON, logs, adapters,
    continual states, plots). Temporary data folders are ``lorakit.data.generated``'s."""
    for tmp in path.rglob(".*"):
        if (tmp.name.endswith(".tmp") or ".tmp." in tmp.name) and tmp.is_file():
            tmp.unlink(missing_ok=True)


def open_run(out: str | os.PathLike, cfg: dict, resume: bool = True) -> RunFolder:
    """The run folder ``out`` for training with ``cfg`` (the config the pipeline will write).

    First the checks of ``check_resume`` (nothing written when they refuse), then the
    folder is made and locked for this process (``run_lock``: a second process training
    into it is refused; the caller releases it); ``resume=False`` starts it over; stale
    temporary files are removed.
    """
    check_resume(out, cfg, resume)
    run = RunFolder(out)
    run_lock.acquire(run.path)
    if not resume:
        start_over(run.path)
    remove_stale_temps(run.path)
    return run


# --------------------------------------------------------------------------- trainer

_RUNTIME = ("TrainerOptions", "trainer_options", "build_trainer", "resumed_from_step")


def __getattr__(name: str):
    """The Lightning runtime moved to ``lorakit.data.runtime``; these names still resolve
    here (lazily, so reading a config does not import Lightning)."""
    if name in _RUNTIME:
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
