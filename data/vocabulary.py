"""One config vocabulary for every pipeline: ``backbone``, ``data``, ``adapter``, ``optim``,
``trainer``, ``eval`` (+ a pipeline's own extras: ``head``, ``prompts``, ``augment``, ...).

Older section names are read for one release, each with a one-line deprecation notice on
stderr (once per process and name), and moved to the new name before anything else reads
the config (a config file, ``--set`` overrides, a stored run's ``config.yaml``):

    pipeline  old                    new
    asr       model                  backbone
    asr       train                  optim
    ood       method (its ``name``)  adapter (its ``method``)

A pipeline declares its renames as ``RENAMED: tuple[Rename, ...]``. Values given under an
old name win over the same key under the new name (the new section usually holds the
pipeline's defaults).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lorakit.data.runs import atomic_write_text, deep_update, load_config


@dataclass(frozen=True)
class Rename:
    """Section ``old`` is now ``new``; ``keys`` renames keys inside it (old -> new)."""

    old: str
    new: str
    keys: dict[str, str] = field(default_factory=dict)

    def key(self, name: str) -> str:
        return self.keys.get(name, name)

    def describe(self) -> str:
        inner = "".join(f", {self.old}.{a} -> {self.new}.{b}" for a, b in self.keys.items())
        return f"{self.old} -> {self.new}{inner}"


_told: set[str] = set()


def notice(rename: Rename, where: str) -> None:
    """The one-line deprecation notice (once per process and old name)."""
    if rename.old in _told:
        return
    _told.add(rename.old)
    print(
        f"lorakit: {where}: config section '{rename.old}' is now '{rename.new}' "
        f"({rename.describe()}); the old name is read until the next release",
        file=sys.stderr,
    )


def upgrade_config(cfg: dict, renames, where: str = "config") -> dict:
    """A copy of ``cfg`` with every old section moved under its new name."""
    out = copy.deepcopy(dict(cfg or {}))
    for r in renames:
        if r.old not in out:
            continue
        old = out.pop(r.old)
        if old is None:
            continue
        if not isinstance(old, dict):
            raise ValueError(f"{where}: config section '{r.old}' must be a mapping")
        notice(r, where)
        moved = {r.key(k): v for k, v in old.items()}
        out[r.new] = deep_update(dict(out.get(r.new) or {}), moved)
    return out


def upgrade_override(item: str, renames) -> str:
    """``train.lr=1e-4`` -> ``optim.lr=1e-4`` (``method.name=x`` -> ``adapter.method=x``)."""
    key, sep, value = item.partition("=")
    head, dot, rest = key.strip().partition(".")
    for r in renames:
        if head == r.old and dot:
            notice(r, "--set")
            first, dot2, tail = rest.partition(".")
            return f"{r.new}.{r.key(first)}{dot2}{tail}{sep}{value}"
    return item


def upgrade_run_folder(run: str | Path, renames) -> None:
    """Rename the old sections of an existing run's ``config.yaml`` in place (content kept),
    so re-running a run started before the renames resumes instead of being refused as a
    run under another config."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        return
    stored = yaml.safe_load(path.read_text()) or {}
    if isinstance(stored, dict) and any(r.old in stored for r in renames):
        new = upgrade_config(stored, renames, str(path))
        atomic_write_text(path, yaml.safe_dump(new, sort_keys=False))


def load_pipeline_config(
    path: str | Path | None, overrides, defaults: dict, renames=()
) -> dict:
    """``data.runs.load_config`` for a pipeline: defaults, the file, ``--set`` overrides,
    with old section names moved to the new ones first; unknown sections one line."""
    raw = upgrade_config(load_config(path) if path is not None else {}, renames, str(path))
    base = deep_update(copy.deepcopy(defaults), raw)
    cfg = load_config(None, [upgrade_override(o, renames) for o in overrides], base)
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f"unknown config section(s) {unknown}; valid: {sorted(defaults)}")
    return cfg
