"""Typed config sections, checked without torch.

A pipeline's config sections are dataclasses (in its light ``config.py``); ``typed_section``
builds one from a dict, naming unknown keys and values of the wrong type in one line
(``optim.lr must be a number, got 'fast'``). Types are read from the dataclass's own
annotations, so nothing here names a pipeline. YAML reads ``1e-3`` (no dot) as a string:
such numeric strings are converted for number fields.

``check_sections`` runs this over a whole merged config, so ``lorakit train`` refuses a bad
``--set`` within a second, before the pipeline module (and torch) is imported.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from functools import cache
from typing import Any, Union

_MISSING = object()


@cache
def _hints(cls) -> dict:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that names something unimportable here
        return {}


def _number(value, kind):
    """``value`` as ``kind`` (int or float), or ``_MISSING`` when it is not one."""
    if isinstance(value, bool):
        return _MISSING
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return _MISSING
    if not isinstance(value, int | float):
        return _MISSING
    if kind is int:
        return int(value) if float(value).is_integer() else _MISSING
    return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


def _convert(value, hint):
    """``value`` fitted to the annotation ``hint``, or ``_MISSING`` when it does not fit."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            return None if type(None) in args else _MISSING
        for arg in sorted(args, key=lambda a: a in (int, float)):  # exact kinds before numbers
            got = _convert(value, arg)
            if got is not _MISSING:
                return got
        return _MISSING
    if hint is Any:
        return value
    if hint is type(None):
        return None if value is None else _MISSING
    if hint in (list, tuple) or origin in (list, tuple):
        return value if isinstance(value, list | tuple) else _MISSING
    if hint is dict or origin is dict:
        return value if isinstance(value, dict) else _MISSING
    if hint is bool:
        return value if isinstance(value, bool) else _MISSING
    if hint in (int, float):
        return _number(value, hint)
    if hint is str:  # a name may be written as a number (precision: 32)
        ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        return value if ok else _MISSING
    return value


def _kind(hint) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             list: "a list", tuple: "a list", dict: "a mapping", type(None): "null"}
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_kind(a) for a in typing.get_args(hint)))
    return names.get(origin or hint, getattr(hint, "__name__", str(hint)))


def typed_section(cls, section: dict | None, where: str):
    """``cls(**section)`` with unknown keys and ill-typed values refused in one line."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ValueError(f"{where} must be a mapping, got {section!r}")
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - valid)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {sorted(valid)}")
    hints = _hints(cls)
    values = {}
    for name, value in section.items():
        hint = hints.get(name, Any)
        got = _convert(value, hint)
        if got is _MISSING:
            raise ValueError(f"{where}.{name} must be {_kind(hint)}, got {value!r}")
        values[name] = got
    try:
        return cls(**values)
    except TypeError as e:  # a __post_init__ comparing what it did not expect
        raise ValueError(f"{where}: {e}") from None


def check_sections(cfg: dict, sections: dict, defaults: dict) -> dict:
    """Every section of a merged config checked: no section outside ``defaults``; each
    section ``sections`` maps to a dataclass is built as it, and its ``validate_light()``
    (the part that needs no torch), else its ``validate()``, is called; any other mapping
    section in ``defaults`` may hold only its default keys, unless ``sections`` maps it to
    None (its keys are checked elsewhere: a method's own fields). Returns the built
    dataclasses by section name."""
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f"unknown config section(s) {unknown}; valid: {sorted(defaults)}")
    built = {}
    for name, value in cfg.items():
        cls = sections.get(name)
        if cls is not None and is_dataclass(cls):
            built[name] = typed_section(cls, value, name)
            check = getattr(built[name], "validate_light", None) or getattr(
                built[name], "validate", None
            )
            if check is not None:
                check()
        elif isinstance(defaults.get(name), dict) and defaults[name] and name not in sections:
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{name} must be a mapping, got {value!r}")
            bad = sorted(set(value or {}) - set(defaults[name]))
            if bad:
                raise ValueError(f"{name}: unknown key(s) {bad}; valid: {sorted(defaults[name])}")
    return built


def backbone_defaults(section: dict) -> dict:
    """A ``backbone:`` section's defaults as a config records them: ``quantize`` (the
    quantized base, empty by default) is left out until it is set, so a float run's
    config.yaml, and the fingerprint of a shipped run, stay what they were before it."""
    return {k: v for k, v in section.items() if not (k == "quantize" and not v)}


@dataclass
class RuntimeConfig:
    """The ``runtime:`` section every pipeline has: torch CPU threads (null: torch's default;
    1 is steadiest on a small shared machine)."""

    threads: int | None = None

    def validate(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"runtime.threads must be >= 1 (or null), got {self.threads}")
