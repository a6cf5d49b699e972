"""The continual methods and the adapter keys each reads, without torch: the CLI checks a
continual config with these before the pipeline (and torch) loads."""

from __future__ import annotations

METHODS = ("gorp", "lora", "lora_merge", "olora", "full", "joint", "drs_lora")
# adapter-section keys each method reads besides the LoRA ones (r, alpha, dropout, ...)
OWN_KEYS = {"gorp": ("r_g", "T", "energy_cl", "merge_lora_per_task", "full_targets"),
            "olora": ("lambda_orth",), "drs_lora": ("sparsity", "sparsity_ramp", "w_init")}  # fmt: skip
ALL_OWN = tuple(k for keys in OWN_KEYS.values() for k in keys)


def check_method(name: str) -> None:
    if name not in METHODS:
        raise ValueError(f"unknown continual method/baseline {name!r}; choose from {list(METHODS)}")


def core_method(name: str) -> str:
    """The core method a continual method trains (its adapter config's fields)."""
    return name if name in ("gorp", "drs_lora") else "lora"


def check_adapter(name: str, adapter: dict) -> None:
    """The ``adapter:`` keys of continual method ``name``: the core method's fields (names
    and kinds from the method table) and the continual methods' own keys."""
    from lorakit.data.method_fields import check_fields, fields_of

    if not isinstance(adapter, dict):
        raise ValueError(f"adapter must be a mapping, got {adapter!r}")
    core = core_method(name)
    known = fields_of(core) or {}
    check_fields(core, {k: v for k, v in adapter.items() if k in known or k not in ALL_OWN})
