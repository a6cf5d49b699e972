"""Which adapter methods the Lightning pipelines can train.

A method that brings its own optimizer for its adapter tensors (ALLoRA, AltLoRA) gets the
pipeline's parameter groups in place of AdamW (``AdapterModule.build_optimizer``). A method
whose optimizer also trains base weights (GORP's projected Adam) would need the pipelines
to save full weights and to run its continual protocol; such methods are refused before
any work starts, except by a loop that runs the method's optimizer (the continual protocol).
"""

from __future__ import annotations

from lorakit.core.registry import METHODS


def check_method_supported(config, runs_method_optimizer: bool = False) -> None:
    """Raise a one-line ``ValueError`` when ``config`` (an adapter config or a method name)
    names a method that brings its own optimizer; unknown names are left to the caller.
    A loop that builds its optimizer with ``protocol.method_optimizer`` and closes tasks
    with ``protocol.end_task`` (the continual protocol, ``lorakit.data.continual``) passes
    ``runs_method_optimizer=True``: every method is supported there."""
    name = config if isinstance(config, str) else config.method
    entry = METHODS.get(name)
    if runs_method_optimizer:
        return
    if entry is not None and entry.layer.trains_base_weights:
        raise ValueError(
            f"method {name!r} brings its own optimizer, which the pipelines do not run; "
            "train it with `lorakit train continual` or the Python API "
            "(protocol.method_optimizer / protocol.end_task)"
        )
