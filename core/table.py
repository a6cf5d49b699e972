"""The method table ``lorakit methods`` prints: formula, mergeability, hosts, defaults."""

from __future__ import annotations

import dataclasses
import sys

from .registry import METHODS

# paper spellings where the class name cannot carry the hyphen
_SPELLING = {
    "BlockLoRA": "Block-LoRA",
    "CompLoRA": "Comp-LoRA",
    "S2LoRA": "S2-LoRA",
    "LoRASB": "LoRA-SB",
    "LoRASqueeze": "LoRA-Squeeze",
    "LoRAGGPO": "LoRA-GGPO",
    "LQLoRA": "LQ-LoRA",
    "BayesianLoRA": "Bayesian-LoRA",
}


def display_name(method: str) -> str:
    """A registered method's name as its paper writes it (``fora`` -> ``FoRA``,
    ``s2_lora`` -> ``S2-LoRA``); an unknown name comes back unchanged."""
    spec = METHODS.get(method)
    if spec is None:
        return method
    cls = spec.layer.__name__
    return _SPELLING.get(cls, cls)


def method_rows() -> list[dict]:
    rows = []
    for name, spec in METHODS.items():
        cfg_cls, method_cls = spec.config, spec.layer
        defaults = {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(cfg_cls)
            if f.name not in ("targets",)
            and (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
        }
        rows.append(
            {
                "method": name,
                "trainable": method_cls.formula,
                "mergeable": method_cls.mergeable,
                "hosts": sorted(method_cls.hosts),
                "defaults": defaults,
                "needs_prepare": method_cls.needs_prepare,
                "trains_base_weights": method_cls.trains_base_weights,
                "rank_changing": method_cls.rank_changing,
                "own_optimizer": spec.optimizer is not None,
                "summary": (sys.modules[method_cls.__module__].__doc__ or "")
                .strip()
                .splitlines()[0],
            }
        )
    return rows


def method_table() -> str:
    lines = []
    for row in method_rows():
        lines.append(f"{row['method']}  -  {row['summary']}")
        lines.append(f"    trainable parameters: {row['trainable']}")
        lines.append(
            f"    mergeable: {'yes' if row['mergeable'] else 'no'}    hosts: {', '.join(row['hosts'])}"
        )
        lines.append("    defaults: " + ", ".join(f"{k}={v}" for k, v in row["defaults"].items()))
        if row["needs_prepare"]:
            lines.append("    training: needs the protocol's prepare step (init from gradients)")
        if row["rank_changing"]:
            lines.append(
                "    training: ranks change during training (protocol hooks); the final ranks "
                "are saved with the adapter, in ranks.json and plots/ranks.png of a run"
            )
        if row["own_optimizer"] and not row["trains_base_weights"]:
            lines.append("    training: brings its own optimizer (protocol.method_optimizer)")
        if row["trains_base_weights"]:
            lines.append(
                "    training: its own optimizer (protocol.method_optimizer) also trains base "
                "weights; save the model's weights, not only the adapter"
            )
    return "\n".join(lines)

