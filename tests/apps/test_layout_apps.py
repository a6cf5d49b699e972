"""apps/ is grouped (cli, web, compare), the 0.1 flat module names still import as the very
same module objects."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest

import lorakit.apps as apps

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("old", sorted(apps.MOVED))
def test_old_flat_name_is_the_moved_module(old):
    new = importlib.import_module(apps.new_name(old))
    sys.modules.pop(f"lorakit.apps.{old}", None)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        alias = importlib.import_module(f"lorakit.apps.{old}")
    assert alias is new
    assert new.__spec__.name == new.__name__ == apps.new_name(old)  # spec restored
    assert any(issubclass(w.category, DeprecationWarning) and apps.new_name(old) in str(w.message)
               for w in seen)


def test_no_flat_modules_left_but_the_registry_and_shared_ones():
    flat = sorted(p.stem for p in (ROOT / "apps").glob("*.py"))
    assert flat == ["__init__", "continual", "pipelines", "run_kind"]
    for group in ("cli", "web", "compare"):
        assert (ROOT / "apps" / group / "__init__.py").is_file()


def test_console_entry_point_and_compare_names():
    from lorakit.apps.cli import app, main

    assert app.registered_commands
    from lorakit.apps.compare import make_plan

    assert callable(main) and main.__module__ == "lorakit.apps.cli.commands"
    assert make_plan.__module__ == "lorakit.apps.compare.run"
    with pytest.raises(AttributeError):
        import lorakit.apps.cli as cli

        cli.no_such_name  # noqa: B018


MAX_LINES = 60  # no function in apps/ longer than this (definition line to last line)


def test_no_long_functions_in_apps():
    import ast

    long = []
    for path in sorted((ROOT / "apps").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "\n".join(long)
