"""A full-weight replacement (``adapter.method: sltrain_full``) in the shared run.

    cfg = replacement_config("sltrain_full", {"r": 4, "density": 0.05}, targets)
    names = replace(model, cfg)          # freeze the model, swap the targets: they train
    save_replaced(model, cfg, folder)    # adapter_config.json + adapter.safetensors
    load_replaced(fresh_model, folder)   # eval / predict: the same layers, the saved values
    densify(model)                       # export: plain nn.Linear with W = s B A + S

What trains is the replaced layers' ``A``, ``B``, ``values`` and bias; every other tensor
of the model is frozen. ``AdapterModule`` checkpoints those tensors and the ``support``
buffer of each replaced layer (a buffer of a module that trains): never a dense weight of
a replaced layer (it no longer exists) nor the frozen rest of the model, so a resumed run
rebuilds the model from its config, replaces the same layers and loads them back exactly.

The run folder's ``adapter/`` holds ``adapter_config.json`` (``{"method": "sltrain_full",
"config": {...}, "layers": [...]}``) and ``adapter.safetensors`` (``<layer>.A``, ``.B``,
``.values``, ``.support``, ``.bias``: the replaced layers' whole state). Loading rebuilds
the layers with the saved config (``init: random``: no SVD of weights about to be
overwritten), loads every tensor and refuses a file that lacks one (the support included:
a support drawn again is the same only by construction, the saved one is the record).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from lorakit.core import SLTrainLinear, SLTrainWeightsConfig, densify, replace_weights
from lorakit.data.weight_methods import REPLACEMENT_METHODS

CONFIG_FILE, TENSOR_FILE = "adapter_config.json", "adapter.safetensors"
__all__ = ["densify", "load_replaced", "replace", "replacement_config", "save_replaced"]


def replacement_config(method: str, hyper: dict, targets) -> SLTrainWeightsConfig:
    """The core config of ``method`` (``sltrain_full``) with ``hyper``; a bad value is one
    ``ValueError`` line naming ``adapter.<field>`` (before any work)."""
    if method not in REPLACEMENT_METHODS:
        raise ValueError(f"{method!r} is not a weight replacement ({', '.join(REPLACEMENT_METHODS)})")
    kinds = REPLACEMENT_METHODS[method]
    unknown = sorted(set(hyper) - set(kinds))
    if unknown:
        raise ValueError(f"adapter: {method} has unknown field(s) {unknown}; valid: {', '.join(kinds)}")
    cast = {"int": int, "float": float, "str": str, "bool": bool}
    values = {}
    for name, value in hyper.items():
        try:
            values[name] = cast[kinds[name]](value)
        except (TypeError, ValueError):
            raise ValueError(f"adapter.{name} must be a {kinds[name]}, got {value!r}") from None
        if kinds[name] == "int" and float(value) != values[name]:
            raise ValueError(f"adapter.{name} must be an integer, got {value!r}")
    if values.get("alpha", 1.0) <= 0:
        raise ValueError(f"adapter.alpha must be positive, got {values['alpha']!r}")
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    cfg = SLTrainWeightsConfig(**values, targets=targets)
    try:
        cfg.validate()
    except ValueError as e:  # the core's message names the field; say where it is set
        raise ValueError(f"adapter ({method}): {str(e).removeprefix('sltrain weights: ')}") from None
    return cfg


def replace(model: nn.Module, cfg: SLTrainWeightsConfig) -> list[str]:
    """Freeze ``model`` and replace its targets (in place); the replaced layers train."""
    model.requires_grad_(False)
    names = replace_weights(model, cfg)
    for name in names:
        model.get_submodule(name).requires_grad_(True)
    return names


def replaced_layers(model: nn.Module) -> dict[str, SLTrainLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, SLTrainLinear)}


def save_replaced(model: nn.Module, cfg: SLTrainWeightsConfig, folder: str | Path,
                  method: str = "sltrain_full") -> Path:
    """Write the replaced layers' tensors and the config that rebuilds them into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = replaced_layers(model)
    if not layers:
        raise ValueError("save_replaced: the model has no replaced layer")
    tensors = {
        f"{name}.{k}": v.detach().contiguous().cpu()
        for name, layer in layers.items()
        for k, v in layer.state_dict().items()
    }
    save_file(tensors, str(folder / TENSOR_FILE))
    meta = {"method": method, "config": dataclasses.asdict(cfg), "layers": list(layers)}
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return folder


def read_method(folder: str | Path) -> str | None:
    """The ``method`` an adapter folder names (None without a config file)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("method")
    except (json.JSONDecodeError, AttributeError):
        return None


def load_replaced(model: nn.Module, folder: str | Path) -> list[str]:
    """Replace the layers ``folder`` names in a freshly built ``model`` and load their
    tensors; returns the layer names. A missing or extra tensor is one ``ValueError`` line."""
    folder = Path(folder)
    meta = json.loads((folder / CONFIG_FILE).read_text())
    fields = {f.name for f in dataclasses.fields(SLTrainWeightsConfig)}
    conf = {k: v for k, v in meta["config"].items() if k in fields}
    conf["targets"] = tuple(re.escape(n) for n in meta["layers"])  # exactly those layers
    cfg = SLTrainWeightsConfig(**{**conf, "init": "random"})  # every tensor is loaded next
    try:
        names = replace(model, cfg)
    except ValueError as e:
        raise ValueError(f"{folder / CONFIG_FILE} does not fit this model: {e}") from None
    if sorted(names) != sorted(meta["layers"]):
        raise ValueError(f"{folder / CONFIG_FILE}: layers {meta['layers']} do not fit this model "
                         f"(its pattern matched {names})")
    tensors = load_file(str(folder / TENSOR_FILE))
    for name in names:
        layer = model.get_submodule(name)
        own = {k: tensors.pop(f"{name}.{k}") for k in layer.state_dict() if f"{name}.{k}" in tensors}
        missing = sorted(set(layer.state_dict()) - set(own))
        if missing:
            raise ValueError(f"{folder / TENSOR_FILE} lacks {name}.{missing[0]} (replaced layer "
                             f"{name} needs {sorted(layer.state_dict())})")
        try:
            layer.load_state_dict(own)
        except RuntimeError as e:
            raise ValueError(f"{folder / TENSOR_FILE}: {name} does not fit "
                             f"({str(e).splitlines()[-1].strip()})") from None
    if tensors:
        raise ValueError(f"{folder / TENSOR_FILE} holds tensors of no replaced layer: {sorted(tensors)[:3]}")
    return names
