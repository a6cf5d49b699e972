"""Plain LoRA to / from Hugging Face PEFT's adapter format (checked against peft 0.21.2).

Export covers Linear, Conv2d, fused qkv Linears and ``nn.MultiheadAttention``. PEFT adapts
a fused projection (or MHA's ``in_proj``) with ONE pair, so our per-slice pairs become a
pair of rank ``n r`` (n adapted slices): ``A = [A_q; A_k; A_v]``, ``B = blockdiag(B_q,
B_k, B_v)`` (rows of unadapted slices zero), with ``rank_pattern`` / ``alpha_pattern``
entries keeping each layer's scale. Import splits such a pair back into exact slices
(each slice gets the shared ``A`` and its rows of ``B``). What PEFT can express but lorakit
cannot (DoRA, bias training, layer replication, ...) is refused with the field named, never
loaded approximately.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .adapters import adapter_names, delete_adapter, named_adapted
from .hosts import Host
from .inject import inject, make_config, named_hosts
from .io import FORMAT, atomic_write, clean_name, load_adapter_tensors, unwrap
from .saved_modules import SavedModule

PEFT_PREFIX = "base_model.model."
HONOURED = {
    "peft_type", "r", "lora_alpha", "lora_dropout", "use_rslora", "rank_pattern",
    "alpha_pattern", "modules_to_save", "target_modules",
}
HARMLESS = {
    "auto_mapping", "base_model_name_or_path", "revision", "inference_mode", "task_type",
    "peft_version", "exclude_modules", "megatron_core", "qalora_group_size",
    "ensure_weight_tying",
}
# PEFT fields lorakit cannot represent: accepted only at their "off" value
OFF_ONLY = {
    "use_dora": "DoRA (weight-decomposed LoRA)", "bias": "trained biases",
    "fan_in_fan_out": "transposed (Conv1D) weights", "lora_bias": "a LoRA bias",
    "layer_replication": "layer replication", "layers_pattern": "layers_pattern",
    "layers_to_transform": "layers_to_transform", "target_parameters": "target_parameters",
    "trainable_token_indices": "trainable tokens", "use_qalora": "QA-LoRA",
    "alora_invocation_tokens": "aLoRA", "arrow_config": "Arrow routing",
    "corda_config": "CorDA", "eva_config": "EVA", "kasa_config": "KaSA",
    "lora_ga_config": "LoRA-GA", "megatron_config": "Megatron layers",
    "monteclora_config": "MonteCLoRA", "velora_config": "VeLoRA", "use_bdlora": "BD-LoRA",
    "loftq_config": "LoftQ",
}
PLAIN_INIT = (True, False, "gaussian")


def _is_off(value) -> bool:
    return value in (None, False, "none", {}, [])


def check_peft_config(meta: dict, where: str) -> None:
    """Refuse, with the field named, what plain lorakit LoRA cannot reproduce exactly."""
    if meta.get("peft_type") != "LORA":
        raise ValueError(f"{where} is not a PEFT LoRA adapter (peft_type={meta.get('peft_type')!r})")
    for key, value in meta.items():
        if key in HONOURED or key in HARMLESS:
            continue
        if key == "init_lora_weights":
            if value not in PLAIN_INIT:
                raise ValueError(
                    f"{where}: init_lora_weights={value!r} changes the base weights; only plain "
                    "LoRA init (true/false/'gaussian') can be imported"
                )
        elif key in OFF_ONLY:
            if not _is_off(value):
                raise ValueError(
                    f"{where}: {key}={value!r} ({OFF_ONLY[key]}) cannot be imported as plain "
                    "LoRA; lorakit refuses rather than load it approximately"
                )
        else:
            raise ValueError(f"{where}: unknown PEFT field {key!r}={value!r}; refusing to guess")


def _pair(m) -> tuple[torch.Tensor, torch.Tensor]:
    return m.A.detach().float().cpu(), m.B.detach().float().cpu()


def _host_pair(name: str, host: Host, adapter: str) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """One PEFT pair ``(A, B)`` for the host, its rank and PEFT alpha (same scale)."""
    slots = host.adapters[adapter]
    first = next(iter(slots.values()))
    if any(m.name != "lora" for m in slots.values()):
        raise ValueError(f"PEFT export needs a plain LoRA adapter; layer {name} has {first.name}")
    cfg = first.cfg
    if host.kind in ("linear", "conv2d"):
        a, b = _pair(slots["weight"])
        if host.kind == "conv2d":
            a = a.reshape(first.r, -1, *host.base.kernel_size)
            b = b[:, :, None, None]
        rank = first.r
    elif host.kind in ("fused_qkv", "mha"):
        if "o" in slots:
            raise ValueError(
                f"layer {name}: PEFT 0.21.2 applies a MultiheadAttention out_proj LoRA twice "
                "in its forward, so an 'o' slice cannot be exported faithfully"
            )
        names = host.slice_names if host.kind == "fused_qkv" else ("q", "k", "v")
        d, used = first.d_out, [s for s in names if s in slots]
        rank = first.r * len(used)
        a = torch.cat([_pair(slots[s])[0] for s in used])
        b = torch.zeros(d * len(names), rank)
        for j, s in enumerate(used):
            i = names.index(s)
            b[i * d : (i + 1) * d, j * first.r : (j + 1) * first.r] = _pair(slots[s])[1]
    else:
        raise ValueError(f"PEFT has no layer for {name} ({type(host.base).__name__}, {host.kind})")
    alpha = first.s * (math.sqrt(rank) if cfg.rslora else rank)
    return a.contiguous(), b.contiguous(), rank, alpha


def export_peft(model: nn.Module, directory: str | os.PathLike, name: str = "default") -> Path:
    """Write adapter ``name`` (plain LoRA) as ``adapter_config.json`` +
    ``adapter_model.safetensors`` that ``peft.PeftModel.from_pretrained`` loads."""
    model = unwrap(model)
    layers = [(n, h) for n, h in named_hosts(model) if name in h.adapters]
    if not layers:
        raise ValueError(f"no adapter named {name!r} to export; the model has {adapter_names(model)}")
    cfg = layers[0][1].configs[name]
    if cfg.method != "lora":
        raise ValueError(f"PEFT export needs a plain LoRA adapter (method 'lora'), not {cfg.method}")
    tensors, names, ranks, alphas = {}, [], {}, {}
    for lname, host in layers:
        a, b, rank, alpha = _host_pair(lname, host, name)
        key = clean_name(lname)
        tensors[f"{PEFT_PREFIX}{key}.lora_A.weight"] = a
        tensors[f"{PEFT_PREFIX}{key}.lora_B.weight"] = b
        names.append(key)
        if host.kind == "mha":  # PEFT also wraps out_proj; zeros keep it a no-op (and quiet)
            e = host.base.embed_dim
            tensors[f"{PEFT_PREFIX}{key}.base_layer.out_proj.lora_A.weight"] = torch.zeros(rank, e)
            tensors[f"{PEFT_PREFIX}{key}.base_layer.out_proj.lora_B.weight"] = torch.zeros(e, rank)
        if (rank, alpha) != (cfg.r, cfg.alpha):
            ranks[key], alphas[key] = rank, alpha
    saved = []
    for mname, m in named_adapted(model):
        if isinstance(m, SavedModule) and name in m.copies:
            saved.append(clean_name(mname))
            for k, t in m.copies[name].state_dict().items():
                tensors[f"{PEFT_PREFIX}{clean_name(mname)}.{k}"] = t.detach().cpu().contiguous()
    meta = {
        "peft_type": "LORA", "r": cfg.r, "lora_alpha": cfg.alpha, "lora_dropout": cfg.dropout,
        "target_modules": names, "use_rslora": cfg.rslora, "bias": "none",
        "fan_in_fan_out": False, "init_lora_weights": True, "modules_to_save": saved or None,
        "rank_pattern": ranks, "alpha_pattern": alphas, "task_type": None,
    }
    directory = Path(directory)
    atomic_write(directory / "adapter_model.safetensors", lambda p: save_file(tensors, p))
    atomic_write(
        directory / "adapter_config.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2))
    )
    return directory


def _split_keys(tensors: dict, where: str):
    """LoRA layer names, and modules_to_save tensors by module."""
    lora, saved = set(), {}
    for key in tensors:
        if not key.startswith(PEFT_PREFIX):
            raise ValueError(f"{where}: tensor {key!r} does not start with {PEFT_PREFIX!r}")
        key = key[len(PEFT_PREFIX) :]
        if ".lora_" in key:
            lora.add(key.rsplit(".lora_", 1)[0])
        else:
            module, _, attr = key.rpartition(".")
            saved.setdefault(module, []).append(attr)
    return sorted(lora), saved


def import_peft(model: nn.Module, directory: str | os.PathLike, name: str = "default"):
    """Load a PEFT LoRA folder into ``model`` as lorakit adapter ``name``."""
    model = unwrap(model)
    directory = Path(directory)
    if not (directory / "adapter_config.json").is_file():
        raise ValueError(f"no PEFT adapter at {directory}: adapter_config.json is missing")
    meta = json.loads((directory / "adapter_config.json").read_text())
    if meta.get("format") == FORMAT:
        raise ValueError(
            f"{directory} is a lorakit adapter, not a PEFT one: load it with "
            f"lorakit.core.load_adapter(model, {str(directory)!r})"
        )
    check_peft_config(meta, str(directory))
    tensors = load_file(str(directory / "adapter_model.safetensors"))
    lora, saved = _split_keys(tensors, str(directory))
    layers = []
    for lname in lora:
        a = tensors[f"{PEFT_PREFIX}{lname}.lora_A.weight"]
        b = tensors[f"{PEFT_PREFIX}{lname}.lora_B.weight"]
        parent, _, child = lname.rpartition(".")
        if parent.endswith(".base_layer") or parent == "base_layer":  # MHA out_proj LoRA
            if b.abs().max() > 0:
                raise ValueError(
                    f"{directory}: layer {lname} (a MultiheadAttention out_proj LoRA) is not "
                    "zero, and peft 0.21.2 applies it twice in forward; refusing to guess"
                )
            continue
        layers.append((lname, a, b))
    names = [n for n, _, _ in layers]
    # each layer's rank, read from its tensors (exact names, so no PEFT pattern can disagree)
    ranks = {re.escape(n): a.shape[0] for n, a, _ in layers if a.shape[0] != meta["r"]}
    cfg = make_config(
        "lora", r=meta["r"], alpha=float(meta["lora_alpha"]),
        dropout=float(meta.get("lora_dropout") or 0.0), rslora=bool(meta.get("use_rslora")),
        targets=tuple(names), slices=("q", "k", "v"),
        rank_pattern=ranks,
        alpha_pattern={k: float(v) for k, v in (meta.get("alpha_pattern") or {}).items()},
        modules_to_save=tuple(saved),
    )
    for n, _, _ in layers:
        m = model.get_submodule(n)
        if not isinstance(m, (nn.Linear, nn.Conv2d, nn.MultiheadAttention)):
            raise ValueError(f"{directory}: layer {n} is {type(m).__name__}, not a PEFT LoRA layer")
    report = inject(model, cfg, name, names=names, saved=list(saved))
    ours = {}
    for lname, a, b in layers:
        host = model.get_submodule(lname)
        for slot, m in host.adapters[name].items():
            i = 0 if slot == "weight" else ("q", "k", "v").index(slot)
            i = host.slice_names.index(slot) if host.kind == "fused_qkv" else i
            ours[f"{lname}.adapters.{slot}.A"] = a.reshape(a.shape[0], -1)
            ours[f"{lname}.adapters.{slot}.B"] = b.reshape(b.shape[0], -1)[
                i * m.d_out : (i + 1) * m.d_out
            ]
    for module, attrs in saved.items():
        for attr in attrs:
            ours[f"modules_to_save.{module}.{attr}"] = tensors[f"{PEFT_PREFIX}{module}.{attr}"]
    try:
        load_adapter_tensors(model, ours, name, source=str(directory))
    except ValueError:
        delete_adapter(model, name)
        raise
    return report
