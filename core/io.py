"""Adapter files: ``adapter_config.json`` + ``adapter.safetensors`` (adapter tensors only).

Also exports plain LoRA to / imports it from Hugging Face PEFT's adapter format.
Writes are atomic (temporary file, then rename), so a crash never leaves half a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .hosts import host_kind, slot_layout
from .inject import hosts, inject, make_config, named_hosts

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter.safetensors"
FORMAT = "lorakit-adapter"


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)``, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def adapter_state(model: nn.Module) -> dict[str, Tensor]:
    """Adapter tensors by name (shared tensors once, under their first name)."""
    state, seen = {}, set()
    for host_name, host in named_hosts(model):
        for key, t in host.adapters.state_dict(keep_vars=True).items():
            if id(t) in seen:
                continue
            seen.add(id(t))
            state[f"{host_name}.adapters.{key}"] = t
    return state


def _config_dict(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def save_adapter(model: nn.Module, directory: str | os.PathLike) -> Path:
    cfg = getattr(model, "_lorakit_config", None)
    if cfg is None or not hosts(model):
        raise ValueError("model has no lorakit adapter to save: call inject(model, config) first")
    directory = Path(directory)
    layers = [
        {"name": n, "host": h.kind, "slots": {s: [m.d_out, m.d_in] for s, m in h.adapters.items()}}
        for n, h in named_hosts(model)
    ]
    meta = {
        "format": FORMAT,
        "version": 1,
        "method": cfg.method,
        "config": _config_dict(cfg),
        "layers": layers,
    }
    tensors = {
        k: v.detach().to("cpu").contiguous().clone() for k, v in adapter_state(model).items()
    }
    atomic_write(
        directory / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"format": FORMAT})
    )
    atomic_write(directory / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    return directory


def read_adapter_config(directory: str | os.PathLike) -> dict:
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise ValueError(f"no adapter at {directory}: {CONFIG_NAME} is missing")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a lorakit adapter config (format={meta.get('format')!r})")
    return meta


def _check_fits(model: nn.Module, meta: dict) -> None:
    """The base must have every adapted layer with the same slot shapes."""
    cfg = meta["config"]
    for layer in meta["layers"]:
        name = layer["name"]
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(
                f"adapter does not fit this model: layer {name!r} is not in the base model"
            ) from None
        kind = host_kind(name, module)
        if kind != layer["host"]:
            raise ValueError(
                f"adapter does not fit this model: layer {name!r} is {type(module).__name__} "
                f"(host {kind}), the adapter was made for host {layer['host']}"
            )
        have = slot_layout(name, module, kind, tuple(cfg.get("slices", ("q", "k", "v"))))
        for slot, shape in layer["slots"].items():
            if slot not in have or list(have[slot]) != list(shape):
                got = "missing" if slot not in have else "x".join(map(str, have[slot]))
                raise ValueError(
                    f"adapter does not fit this model: layer {name!r} slot {slot} expects "
                    f"weight {shape[0]}x{shape[1]}, base has {got}"
                )


def load_adapter(model: nn.Module, directory: str | os.PathLike):
    """Inject the saved adapter into ``model`` and load its tensors. Returns the report."""
    directory = Path(directory)
    meta = read_adapter_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ValueError(f"no adapter weights at {weights}")
    _check_fits(model, meta)
    cfg = make_config(meta["method"], **meta["config"])
    report = inject(model, cfg, names=[layer["name"] for layer in meta["layers"]])
    load_adapter_tensors(model, load_file(str(weights)), source=str(weights))
    return report


@torch.no_grad()
def load_adapter_tensors(
    model: nn.Module, tensors: dict[str, Tensor], source: str = "state"
) -> None:
    state = adapter_state(model)
    missing = sorted(set(state) - set(tensors))
    unexpected = sorted(set(tensors) - set(state))
    if missing or unexpected:
        raise ValueError(
            f"adapter tensors in {source} do not fit this model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for key, target in state.items():
        value = tensors[key]
        if value.shape != target.shape:
            if isinstance(target, nn.Parameter):
                raise ValueError(
                    f"adapter tensor {key} has shape {tuple(value.shape)} in {source}, "
                    f"the model expects {tuple(target.shape)}"
                )
            module_name, _, buf = key.rpartition(".")
            model.get_submodule(module_name)._buffers[buf] = value.to(target.device, target.dtype)
            continue
        target.copy_(value)


# --- Hugging Face PEFT format (plain LoRA on Linear / Conv2d) -------------------------------

PEFT_PREFIX = "base_model.model."


def export_peft(model: nn.Module, directory: str | os.PathLike) -> Path:
    cfg = getattr(model, "_lorakit_config", None)
    if cfg is None or cfg.method != "lora":
        raise ValueError("PEFT export needs a plain LoRA adapter (method 'lora')")
    tensors, names = {}, []
    for name, host in named_hosts(model):
        if host.kind not in ("linear", "conv2d"):
            raise ValueError(
                f"PEFT export supports Linear and Conv2d layers; {name} is {host.kind}"
            )
        m = host.adapters["weight"]
        a, b = m.A.detach().cpu(), m.B.detach().cpu()
        if host.kind == "conv2d":
            a = a.reshape(m.r, -1, *host.base.kernel_size)
            b = b[:, :, None, None]
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = b.contiguous()
        names.append(name)
    meta = {
        "peft_type": "LORA",
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": names,
        "use_rslora": cfg.rslora,
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "task_type": None,
    }
    directory = Path(directory)
    atomic_write(directory / "adapter_model.safetensors", lambda p: save_file(tensors, p))
    atomic_write(
        directory / "adapter_config.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2))
    )
    return directory


def import_peft(model: nn.Module, directory: str | os.PathLike):
    directory = Path(directory)
    meta = json.loads((directory / "adapter_config.json").read_text())
    if meta.get("peft_type") != "LORA":
        raise ValueError(
            f"{directory} is not a PEFT LoRA adapter (peft_type={meta.get('peft_type')!r})"
        )
    tensors = load_file(str(directory / "adapter_model.safetensors"))
    names = sorted({k[len(PEFT_PREFIX) :].rsplit(".lora_", 1)[0] for k in tensors})
    cfg = make_config(
        "lora",
        r=meta["r"],
        alpha=meta["lora_alpha"],
        dropout=meta.get("lora_dropout", 0.0),
        rslora=bool(meta.get("use_rslora", False)),
        targets=tuple(names),
    )
    report = inject(model, cfg, names=names)
    ours = {}
    for name in names:
        a = tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"]
        b = tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"]
        ours[f"{name}.adapters.weight.A"] = a.reshape(a.shape[0], -1)
        ours[f"{name}.adapters.weight.B"] = b.reshape(b.shape[0], -1)
    load_adapter_tensors(model, ours, source=str(directory))
    return report
