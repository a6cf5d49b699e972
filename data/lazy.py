"""Names of a package imported from their submodules on first use (PEP 562), so that the
package's light parts (config checks) load without torch."""

from __future__ import annotations

import importlib
import sys


def lazy_getattr(package: str, homes: dict[str, str]):
    """A module ``__getattr__`` for ``package``: ``homes`` maps each exported name to the
    submodule defining it; the value is cached on the package after the first lookup."""

    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{homes[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
