"""The adapter methods' config fields, checked without torch.

``lorakit train`` refuses ``--set adapter.r=x`` or a field the chosen method does not have
within a second, before the pipeline (and torch, which the method registry imports) loads.
The fields are not written here by hand: ``method_table.py`` is generated from the real
config dataclasses of the registry (``render``), and a test fails when it is out of date::

    .venv/bin/python -m lorakit.data.method_fields      # rewrite method_table.py

A method the table does not know (one registered at run time, e.g. in a test) is checked
against the live registry when that is already imported; the registry's own checks
(``make_config``: ranges, choices) still run when the config is made.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import method_table
from .weight_methods import PIPELINES as REPLACEMENT_PIPELINES
from .weight_methods import REPLACEMENT_METHODS

TABLE = Path(__file__).with_name("method_table.py")


def _live(method: str) -> dict[str, str] | None:
    """The fields of a method registered in an already imported registry (else None)."""
    registry = sys.modules.get("lorakit.core.registry")
    if registry is None or method not in registry.METHODS:
        return None
    return kinds_of(registry.METHODS[method].config)


def method_names() -> list[str]:
    registry = sys.modules.get("lorakit.core.registry")
    live = list(registry.METHODS) if registry is not None else []
    return list(dict.fromkeys([*method_table.METHODS, *live]))


def fields_of(method: str) -> dict[str, str] | None:
    """``{field: kind}`` of ``method``'s config (PEFT's names included), None if unknown."""
    own = method_table.METHODS.get(method)
    found = {**method_table.COMMON, **own} if own is not None else _live(method)
    if found is None:
        return None
    return found | {alias: found[name] for alias, name in method_table.ALIASES.items() if name in found}


def check_method(method, where: str = "adapter.method", also: tuple = ()) -> None:
    """``method`` names a registered method (or one of ``also``: none, full, ...)."""
    if not isinstance(method, str) or not method:
        raise ValueError(f"{where} must be a method name, got {method!r}")
    if method not in also and method in REPLACEMENT_METHODS:
        raise ValueError(
            f"{where}: {method} replaces the model's weights; only the "
            f"{' and '.join(REPLACEMENT_PIPELINES)} pipelines run it"
        )
    if method not in also and fields_of(method) is None:
        valid = ", ".join([*also, *method_names()])
        raise ValueError(f"unknown method {method!r}: {where} must be one of {valid}")


def check_fields(method: str, values: dict, where: str = "adapter") -> None:
    """Every key of ``values`` is a field of ``method``'s config, of the right kind: one
    line naming the first that is not (and the valid fields)."""
    known = fields_of(method)
    if known is None:
        return  # not a method: check_method says so
    unknown = sorted(set(values) - set(known))
    if unknown:
        valid = ", ".join(k for k in known if k not in method_table.ALIASES)
        raise ValueError(f"{where}: {method} has unknown field(s) {unknown}; valid: {valid}")
    for name, value in values.items():
        if not fits(value, known[name]):
            raise ValueError(f"{where}.{name} must be {KIND_WORDS[known[name]]}, got {value!r}")


def check_replacement_fields(method: str, values: dict, where: str = "adapter") -> None:
    """Every key of ``values`` is a field of the replacement ``method``, of the right kind."""
    known = REPLACEMENT_METHODS[method]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: {method} has unknown field(s) {unknown}; valid: {', '.join(known)}")
    for name, value in values.items():
        if not fits(value, known[name]):
            raise ValueError(f"{where}.{name} must be {KIND_WORDS[known[name]]}, got {value!r}")


# --------------------------------------------------------------------------- kinds

KIND_WORDS = {
    "int": "an integer", "int|null": "an integer or null", "float": "a number",
    "float|null": "a number or null", "bool": "true or false", "str": "a string",
    "str|null": "a string or null", "list": "a list", "list|null": "a list or null",
    "dict": "a mapping", "dict|null": "a mapping or null", "any": "any value",
}  # fmt: skip


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def fits(value, kind: str) -> bool:
    """Whether a config value can be the field's kind (YAML reads ``1e-3`` as a string)."""
    base, _, null = kind.partition("|")
    if value is None:
        return bool(null) or base == "any"
    if base == "int":
        n = _number(value)
        return n is not None and n.is_integer()
    if base == "float":
        return _number(value) is not None
    if base == "bool":
        return isinstance(value, bool)
    if base == "str":  # a name or a pattern; a list of them is a tuple field elsewhere
        return isinstance(value, str)
    if base == "list":  # one pattern is a one-element tuple (make_config's targets)
        return isinstance(value, list | tuple | str)
    if base == "dict":
        return isinstance(value, dict)
    return True


def _kind(hint) -> str:
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = _kind(rest[0]) if len(rest) == 1 else "any"
        return inner if inner == "any" or len(rest) == len(args) else f"{inner}|null"
    base = origin or hint
    for kind, types_ in (("bool", (bool,)), ("int", (int,)), ("float", (float,)), ("str", (str,)),
                         ("list", (list, tuple)), ("dict", (dict,))):  # fmt: skip
        if base in types_:
            return kind
    return "any"


def kinds_of(config_class) -> dict[str, str]:
    """``{field: kind}`` of a config dataclass, read from its annotations."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(config_class)
    return {f.name: _kind(hints[f.name]) for f in dataclasses.fields(config_class)}


def render() -> str:
    """The text of ``method_table.py`` from the live registry (imports torch)."""
    from lorakit.core.method import AdapterConfig
    from lorakit.core.methods import BUILTIN
    from lorakit.core.registry import PEFT_ALIASES

    common = kinds_of(AdapterConfig)
    lines = [
        '"""Generated by ``python -m lorakit.data.method_fields`` from the config dataclasses',
        'of the method registry; do not edit (tests/apps/test_cli_fast.py checks it is current)."""',
        "",
        f"COMMON = {common!r}",
        f"ALIASES = {dict(PEFT_ALIASES)!r}",
        "METHODS = {",
    ]
    for name, (config, _) in BUILTIN.items():
        own = {k: v for k, v in kinds_of(config).items() if common.get(k) != v}
        lines.append(f"    {name!r}: {own!r},")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    TABLE.write_text(render())
    print(f"wrote {TABLE}")
