"""``lorakit selfcheck``: adapt tiny models with every method on every host it supports."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

from lorakit.core.contract import check_contract, supported_pairs


def run_selfcheck(echo: Callable[[str], None] = print) -> bool:
    """Run the adapter contract over every (method, host) pair; print one line each."""
    pairs = supported_pairs()
    echo(
        f"lorakit selfcheck: {len(pairs)} method x host pairs (zero-init, training step, "
        "disable/enable, save/load, merge)"
    )
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        for method, zoo in pairs:
            t0 = time.perf_counter()
            try:
                check_contract(method, zoo, workdir=d)
                status = "ok"
            except (AssertionError, ValueError) as e:
                failed += 1
                status = f"FAILED: {e}"
            echo(f"  {method:<11} on {zoo:<14} {status}  ({time.perf_counter() - t0:.2f}s)")
    echo(f"{len(pairs) - failed} passed, {failed} failed")
    return failed == 0
