"""The ``lorakit`` command line: ``commands`` holds the app (train, eval, methods, selfcheck)
and each other module registers one verb. ``from lorakit.apps.cli import app, main`` (the
console script's entry point) loads ``commands`` on first use, so importing one verb's
module does not build the whole CLI."""

import importlib


def __getattr__(name: str):
    if name in ("app", "main", "PIPELINES"):
        return getattr(importlib.import_module(f"{__name__}.commands"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
