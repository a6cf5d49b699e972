"""Adapter files: ``adapter_config.json`` + ``adapter.safetensors`` (adapter tensors only).

One adapter (by name) per folder. Tensor keys do not contain the adapter name:
``<layer>.adapters.<slot>.<tensor>`` and ``modules_to_save.<module>.<tensor>``, the v0.1
layout, so v0.1 folders load unchanged and an adapter can be loaded under any name.
Layer names are relative to the module given to ``save_adapter`` with ``torch.compile``'s
``_orig_mod.`` removed, so a compiled model saves names a plain one loads, and back.
Writes are atomic (temporary file, then rename), so a crash never leaves half a file; the
temporary file a kill leaves behind is removed by the next save. Reading never runs code
(JSON and safetensors only), and a truncated or mismatched file is one ``ValueError`` line
naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .adapters import adapter_names, apply_trainability, delete_adapter, named_adapted, named_hosts
from .hosts import Host
from .inject import inject
from .layout import host_kind, slot_layout
from .registry import make_config
from .saved_modules import SavedModule

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter.safetensors"
FORMAT = "lorakit-adapter"
# PEFT reads ``peft_type`` first and fails on an unknown one with this text as its KeyError:
# a PEFT user who hands this folder to ``PeftModel.from_pretrained`` learns what to call.
PEFT_POINTER = "lorakit adapter, not PEFT: lorakit.core.export_peft(model, dir) writes a PEFT folder"
SAVED_PREFIX = "modules_to_save."


def write_error(path: str | os.PathLike, e: OSError, kept: str = "the file it would replace") -> ValueError:
    """The one-line error for a failed write of ``path`` (a full disk says so)."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return ValueError(
            f"disk full: could not write {path} ({e.strerror or e}); {kept} is kept: free some "
            "space and run the same command again"
        )
    return ValueError(f"could not write {path}: {e.strerror or e}")


def remove_stale_temps(path: str | os.PathLike) -> None:
    """Delete the temporary files a killed ``atomic_write(path, ...)`` left behind."""
    path = Path(path)
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)``, then rename over ``path``; a failed write (a full disk) is a
    ``ValueError`` naming ``path``, with ``path`` untouched and no temporary file left."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def unwrap(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile`` wrapper holds (or ``model`` itself)."""
    while isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model = model._orig_mod
    return model


def clean_name(name: str) -> str:
    return ".".join(p for p in name.split(".") if p != "_orig_mod")


def _entries(model: nn.Module, name: str) -> dict[str, tuple[nn.Module, str, Tensor]]:
    """File key -> (owning module, attribute, tensor) for adapter ``name``; a shared
    tensor (S2-LoRA's group pair) once, under its first key."""
    out, seen = {}, set()
    for path, m in named_adapted(model):
        members = m.adapters if isinstance(m, Host) else m.copies
        if name not in members:
            continue
        sub = members[name]
        prefix = f"{clean_name(path)}.adapters." if isinstance(m, Host) else (
            f"{SAVED_PREFIX}{clean_name(path)}."
        )
        for key, t in sub.state_dict(keep_vars=True).items():
            if id(t) in seen:
                continue
            seen.add(id(t))
            owner, _, attr = key.rpartition(".")
            out[prefix + key] = (sub.get_submodule(owner) if owner else sub, attr, t)
    return out


def from_base(owner: nn.Module, attr: str) -> bool:
    """Whether ``owner.attr`` is a buffer the base weight determines (the method's
    ``from_base``): recomputed at inject, so files and checkpoints leave it out."""
    return attr in getattr(owner, "from_base", ())


def adapter_state(model: nn.Module, name: str = "default") -> dict[str, Tensor]:
    """Adapter ``name``'s tensors by file key (shared tensors once), as a file holds them:
    without the buffers the base determines."""
    return {
        k: t for k, (owner, attr, t) in _entries(unwrap(model), name).items()
        if not from_base(owner, attr)
    }


def _config_dict(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def _no_adapter(model: nn.Module, name: str) -> ValueError:
    have = adapter_names(model)
    if not have:
        return ValueError("model has no lorakit adapter to save: call inject(model, config) first")
    return ValueError(f"no adapter named {name!r} in the model; it has {have}")


def save_adapter(model: nn.Module, directory: str | os.PathLike, name: str = "default") -> Path:
    """Write adapter ``name`` (its tensors and modules_to_save) to ``directory``."""
    model = unwrap(model)
    layers = [(n, h) for n, h in named_hosts(model) if name in h.adapters]
    if not layers:
        raise _no_adapter(model, name)
    cfg = layers[0][1].configs[name]
    saved = [clean_name(n) for n, m in named_adapted(model)
             if isinstance(m, SavedModule) and name in m.copies]
    meta = {
        "format": FORMAT,
        "version": 2,
        "peft_type": PEFT_POINTER,
        "method": cfg.method,
        "config": _config_dict(cfg),
        "layers": [
            {
                "name": clean_name(n),
                "host": h.kind,
                "slots": {s: [m.d_out, m.d_in] for s, m in h.adapters[name].items()},
                **_ranks_entry(h.adapters[name]),
                **_digest_entry(h.adapters[name]),
            }
            for n, h in layers
        ],
        "modules_to_save": saved,
    }
    tensors = {k: t.detach().to("cpu").contiguous().clone() for k, t in adapter_state(model, name).items()}
    directory = Path(directory)
    for name_ in (WEIGHTS_NAME, CONFIG_NAME):
        remove_stale_temps(directory / name_)
    atomic_write(
        directory / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"format": FORMAT})
    )
    atomic_write(directory / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    return directory


def _ranks_entry(slots) -> dict:
    """``{"ranks": {slot: r}}`` for rank-changing methods (SoRA, IncreLoRA, ...): the
    final per-slot ranks, which a load restores before it reads the tensors."""
    if not any(m.rank_changing for m in slots.values()):
        return {}
    return {"ranks": {s: int(m.r) for s, m in slots.items()}}


def _digest_entry(slots) -> dict:
    """``{"base_sha256": {slot: digest}}`` for methods whose buffers the base determines
    (``from_base``): the file leaves them out, and a load checks it rebuilt them from the
    same W0."""
    digests = {s: m.base_digest for s, m in slots.items() if m.from_base}
    return {"base_sha256": digests} if digests else {}


def _check_digests(model: nn.Module, meta: dict, name: str) -> None:
    """Refuse a base whose W0 differs from the one the file's ``from_base`` buffers came
    from (one line naming the first layer that differs)."""
    for layer in meta["layers"]:
        host = model.get_submodule(_resolve(model, layer["name"]))
        for slot, want in layer.get("base_sha256", {}).items():
            m = host.adapters[name][slot]
            if m.from_base and m.base_digest != want:
                where = layer["name"] if slot == "weight" else f"{layer['name']}:{slot}"
                raise ValueError(
                    f"adapter does not fit this model: the base weight of layer {where!r} is "
                    f"not the one the adapter was trained on (sha256 {m.base_digest[:12]}, the "
                    f"file says {want[:12]}); {m.name} rebuilds {sorted(m.from_base)} from it: "
                    "load onto the base model it was trained on"
                )


def _apply_ranks(model: nn.Module, meta: dict, name: str) -> None:
    for layer in meta["layers"]:
        host = model.get_submodule(_resolve(model, layer["name"]))
        for slot, r in layer.get("ranks", {}).items():
            m = host.adapters[name][slot]
            if not m.rank_changing:
                raise ValueError(f"adapter file gives ranks, but {m.name} cannot change rank")
            if not isinstance(r, int) or not 0 <= r <= min(m.d_out, m.d_in):
                raise ValueError(f"adapter file: bad rank {r!r} for layer {layer['name']}:{slot}")
            m.set_rank(r)
            m.take_resizes()


def read_adapter_config(directory: str | os.PathLike) -> dict:
    """``adapter_config.json``, checked field by field (one ``ValueError`` line naming the
    file and the field when it is truncated, foreign or malformed)."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise ValueError(f"no adapter at {directory}: {CONFIG_NAME} is missing")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable (truncated or not JSON: {e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a lorakit adapter config (not a JSON object)")
    if "peft_type" in meta and "format" not in meta:
        raise ValueError(
            f"{directory} is a PEFT adapter (peft_type={meta['peft_type']!r}), not a lorakit one: "
            f"load it with lorakit.core.import_peft(model, {str(directory)!r})"
        )
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a lorakit adapter config (format={meta.get('format')!r})")
    _check_meta(meta, path)
    return meta


def _check_meta(meta: dict, path: Path) -> None:
    """The fields ``load_adapter`` reads, with their types."""
    for key, kind in (("method", str), ("config", dict), ("layers", list)):
        if not isinstance(meta.get(key), kind):
            raise ValueError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
    if not isinstance(meta.get("modules_to_save", []), list):
        raise ValueError(f"{path}: field 'modules_to_save' must be a list")
    if any(not isinstance(layer.get("ranks", {}), dict) for layer in meta["layers"]
           if isinstance(layer, dict)):  # fmt: skip
        raise ValueError(f"{path}: a layer's 'ranks' must map slots to ranks")
    for layer in meta["layers"]:
        digests = layer.get("base_sha256", {}) if isinstance(layer, dict) else {}
        if not isinstance(digests, dict) or not all(isinstance(d, str) for d in digests.values()):
            raise ValueError(f"{path}: a layer's 'base_sha256' must map slots to hex digests")
    for i, layer in enumerate(meta["layers"]):
        ok = isinstance(layer, dict) and isinstance(layer.get("name"), str)
        ok = ok and isinstance(layer.get("host"), str) and isinstance(layer.get("slots"), dict)
        ok = ok and all(
            isinstance(s, list) and len(s) == 2 and all(isinstance(d, int) for d in s)
            for s in layer["slots"].values()
        )
        if not ok:
            raise ValueError(
                f"{path}: layers[{i}] must have a name, a host and slots {{slot: [d_out, d_in]}}"
            )


def _resolve(model: nn.Module, name: str, what: str = "layer") -> str:
    """The real module name for a saved (compile-free) one."""
    names = {clean_name(n): n for n, _ in model.named_modules()}
    if name not in names:
        raise ValueError(f"adapter does not fit this model: {what} {name!r} is not in the base model")
    return names[name]


def _check_fits(model: nn.Module, meta: dict) -> None:
    """The base must have every adapted layer with the same slot shapes."""
    cfg = meta["config"]
    fused = cfg.get("fused", {"qkv": 3})
    for layer in meta["layers"]:
        name = layer["name"]
        module = model.get_submodule(_resolve(model, name))
        if isinstance(module, Host):
            kind, module = module.kind, module.base
        else:
            kind = host_kind(name, module, fused)
        if kind != layer["host"]:
            raise ValueError(
                f"adapter does not fit this model: layer {name!r} is {type(module).__name__} "
                f"(host {kind}), the adapter was made for host {layer['host']}"
            )
        slices = tuple(cfg.get("slices", ("q", "k", "v")))
        have = slot_layout(name, module, kind, slices, fused)
        for slot, shape in layer["slots"].items():
            if slot not in have or list(have[slot]) != list(shape):
                got = "missing" if slot not in have else "x".join(map(str, have[slot]))
                raise ValueError(
                    f"adapter does not fit this model: layer {name!r} slot {slot} expects "
                    f"weight {shape[0]}x{shape[1]}, base has {got}"
                )


def _read_weights(path: Path) -> dict:
    """The adapter's tensors; a truncated or corrupt file is one ValueError line."""
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ValueError(
            f"adapter weights {path} are unreadable (truncated or corrupt: {reason}); "
            "save the adapter again or retrain"
        ) from None


def load_adapter(
    model: nn.Module, directory: str | os.PathLike, name: str = "default", trainable: bool = False
):
    """Add the saved adapter to ``model`` under ``name`` and load its tensors.

    ``trainable=False`` (default): for inference, its modules in eval mode (dropout off)
    and ``requires_grad=False``. ``trainable=True``: to continue training. A load that
    fails leaves the model as it was. Returns the ``InjectReport``.
    """
    model = unwrap(model)
    directory = Path(directory)
    meta = read_adapter_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ValueError(f"no adapter weights at {weights}")
    if name in adapter_names(model):
        raise ValueError(
            f"model already has an adapter named {name!r}: load_adapter(model, dir, "
            f"name=...) with another name, or delete_adapter(model, {name!r}) first"
        )
    _check_fits(model, meta)
    tensors = _read_weights(weights)  # before inject: a bad file leaves the model untouched
    try:
        cfg = make_config(meta["method"], **meta["config"])
    except (TypeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{directory / CONFIG_NAME}: bad method or config: {reason}") from None
    layers = [_resolve(model, layer["name"]) for layer in meta["layers"]]
    saved = [_resolve(model, n, "module") for n in meta.get("modules_to_save", [])]
    report = inject(model, cfg, name, names=layers, saved=saved)
    try:
        _apply_ranks(model, meta, name)
        _check_digests(model, meta, name)
        load_adapter_tensors(model, tensors, name, source=str(weights))
    except ValueError:
        delete_adapter(model, name)
        raise
    for _, m in named_adapted(model):
        members = m.adapters if isinstance(m, Host) else m.copies
        if name in members and not trainable:
            m.frozen.add(name)
            members[name].eval()
    apply_trainability(model)
    return report


@torch.no_grad()
def load_adapter_tensors(
    model: nn.Module, tensors: dict[str, Tensor], name: str = "default", source: str = "state"
) -> None:
    entries = _entries(unwrap(model), name)
    missing = sorted(
        k
        for k in set(entries) - set(tensors)
        if entries[k][1] not in getattr(entries[k][0], "optional_state", ())
        and not from_base(entries[k][0], entries[k][1])
    )
    unexpected = sorted(set(tensors) - set(entries))
    if missing or unexpected:
        raise ValueError(
            f"adapter tensors in {source} do not fit this model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for key, (owner, attr, target) in entries.items():
        if key not in tensors:  # recomputed from the base, or optional_state an older file lacks
            continue
        value = tensors[key]
        if value.shape != target.shape:
            if isinstance(target, nn.Parameter):
                raise ValueError(
                    f"adapter tensor {key} has shape {tuple(value.shape)} in {source}, "
                    f"the model expects {tuple(target.shape)}"
                )
            owner._buffers[attr] = value.to(target.device, target.dtype)  # e.g. Comp-LoRA's U_k
            continue
        target.copy_(value)
