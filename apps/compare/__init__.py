"""``lorakit compare``: ``run`` (the plan, the lr choice on validation and the runs),
``pipelines`` (how each pipeline is driven), ``stats`` (intervals and differences) and
``report`` (the table and the plot). ``from lorakit.apps.compare import make_plan`` (the
0.1 module's names) still works: other attributes are read from ``run``."""

import importlib


def __getattr__(name: str):
    run = importlib.import_module(f"{__name__}.run")
    try:
        return getattr(run, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
