"""LoRA-Squeeze, post-hoc: compress any mergeable adapter to a plain rank-``k`` LoRA.

For every slot, the update ``dW = delta_weight()`` (``d_out x d_in``) is replaced by its
rank-``k`` truncated SVD computed with a randomised SVD (Halko et al.: a Gaussian sketch
with ``oversample`` extra columns, ``n_iter`` power iterations with re-orthonormalisation,
a fixed seed, so the result is reproducible): ``B = U_k S_k``, ``A = V_k^T``, saved as a
LoRA with ``r = alpha = k`` (``s = 1``). The randomised SVD's error above the optimum is
tiny when the spectrum decays past ``k`` (checked against a full SVD in the tests).

The adapter file alone is enough: each slot's method is rebuilt from the file (config,
slot shapes, host kind, tensors) on a stand-in base weight, which works because every
mergeable method keeps what its update depends on (LDU factors, radii, seeds) in the file;
the tests check this per method against the real model. A method whose buffers the base
determines (``from_base``: Comp-LoRA's SVD basis of W0) leaves them out of the file, so its
deltas come from the adapted model itself (a run folder's base, rebuilt by its pipeline).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .adapters import named_methods
from .io import (
    CONFIG_NAME,
    FORMAT,
    SAVED_PREFIX,
    WEIGHTS_NAME,
    _config_dict,
    clean_name,
    read_adapter_config,
    unwrap,
)
from .method import SlotInfo, canonical_signs
from .registry import METHODS, MethodSpec, make_config


def _check_rebuildable(spec: MethodSpec, hosts: set[str], tensors: dict[str, Tensor]) -> None:
    """Refuse what the file alone cannot rebuild (the method's ``not_from_file``: Uni-LoRA's
    one projection spans the whole model; VeRA's conv bases follow the kernel geometry; its
    ``from_base`` buffers, unless the file is an older one that holds them)."""
    base_state = any(k.rpartition(".")[2] in spec.layer.from_base for k in tensors)
    if spec.from_file(hosts, base_state):
        return
    bad = spec.layer.not_from_file
    if bad is not None and not hosts & bad:
        raise ValueError(
            f"squeeze: a {spec.name} adapter cannot be rebuilt from its file alone (it "
            f"recomputes {sorted(spec.layer.from_base)} from the base weights, which the file "
            "does not hold): squeeze its run folder, whose pipeline rebuilds the base"
        )
    where = "" if bad is None else f" on {', '.join(sorted(hosts & bad))} layers"
    raise ValueError(
        f"squeeze: a {spec.name} adapter{where} cannot be rebuilt from its file alone "
        "(its bases depend on the whole model); merge it and compress the merged update"
    )


def randomized_svd(m: Tensor, k: int, oversample: int = 8, n_iter: int = 4, seed: int = 0):
    """``(U_k, S_k, Vh_k)`` of ``m`` (float64 inside) by randomised subspace iteration, pair
    signs as in ``thin_svd`` (the written factors do not depend on the machine)."""
    m = m.double()
    rows, cols = m.shape
    p = min(k + oversample, rows, cols)
    g = torch.Generator(device="cpu").manual_seed(seed)
    q, _ = torch.linalg.qr(m @ torch.randn(cols, p, generator=g, dtype=m.dtype).to(m.device))
    for _ in range(n_iter):
        z, _ = torch.linalg.qr(m.T @ q)
        q, _ = torch.linalg.qr(m @ z)
    u, s, vh = torch.linalg.svd(q.T @ m, full_matrices=False)
    u, vh = canonical_signs((q @ u)[:, :k], vh[:k])
    return u, s[:k], vh


def _fit_buffers(m: torch.nn.Module, own: dict[str, Tensor]) -> None:
    """Give ``m``'s buffers the shapes the file has: a buffer computed from the base weight
    (a ``from_base`` basis whose size follows an energy threshold of ``W0``, in a file
    written before such buffers were left out) has another shape on the stand-in base, and
    the file's value is the one the update uses."""
    for key, value in own.items():
        *path, leaf = key.split(".")
        owner = m.get_submodule(".".join(path)) if path else m
        old = owner._buffers.get(leaf)
        if old is not None and old.shape != value.shape:
            owner._buffers[leaf] = torch.empty_like(value, dtype=old.dtype)


def _deltas_of(model: torch.nn.Module, name: str = "default") -> dict[str, Tensor]:
    """``{layer:slot -> dW}`` of adapter ``name`` loaded in ``model``."""
    with torch.no_grad():
        return {
            (clean_name(layer) if slot == "weight" else f"{clean_name(layer)}:{slot}"):
            m.delta_weight().float().cpu()
            for layer, slot, m in named_methods(unwrap(model), name)
        }


def adapter_deltas(
    directory: str | os.PathLike, adapted: Callable[[], torch.nn.Module] | None = None
) -> tuple[dict, dict[str, Tensor], dict]:
    """``(meta, {layer:slot -> dW}, tensors)`` of a saved adapter, from the file alone, or,
    for an adapter whose ``from_base`` buffers the file leaves out, from the model
    ``adapted()`` returns (its base with this adapter loaded as ``default``)."""
    directory = Path(directory)
    meta = read_adapter_config(directory)
    method = meta["method"]
    if method not in METHODS:
        raise ValueError(f"squeeze: unknown method {method!r} in {directory}")
    cls = METHODS[method].layer
    if not cls.mergeable:
        raise ValueError(f"squeeze: {method} is not mergeable, so it has no B A to compress")
    tensors = load_file(str(directory / WEIGHTS_NAME))
    hosts = {layer["host"] for layer in meta["layers"]}
    if adapted is not None and not METHODS[method].from_file(hosts) and METHODS[method].from_file(
        hosts, base_state=True
    ):
        return meta, _deltas_of(adapted()), tensors
    _check_rebuildable(METHODS[method], hosts, tensors)
    cfg = make_config(method, **meta["config"])
    context: dict = {}
    g = torch.Generator().manual_seed(0)
    deltas, used = {}, set()
    for layer in meta["layers"]:
        for slot, (d_out, d_in) in layer["slots"].items():
            name = layer["name"] if slot == "weight" else f"{layer['name']}:{slot}"
            stand_in = torch.randn(d_out, d_in, generator=g) / d_in**0.5
            m = cls(cfg, SlotInfo(name, d_out, d_in, stand_in, host=layer["host"], context=context))
            if "ranks" in layer:
                m.set_rank(int(layer["ranks"][slot]))
            prefix = f"{layer['name']}.adapters.{slot}."
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            _fit_buffers(m, own)
            m.load_state_dict(own, strict=False)
            used |= {prefix + k for k in own}
            with torch.no_grad():
                deltas[name] = m.delta_weight().float()
    left = [k for k in tensors if k not in used and not k.startswith(SAVED_PREFIX)]
    if left:
        raise ValueError(f"squeeze: tensors in {directory} that no slot uses: {left[:3]}")
    return meta, deltas, tensors


def squeeze_adapter(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    k: int,
    adapted: Callable[[], torch.nn.Module] | None = None,
    **rsvd,
) -> dict:
    """Write the rank-``k`` LoRA of adapter ``src`` to the new folder ``dst`` (atomically:
    built beside it, then renamed; ``dst`` must not exist). Returns a report with each
    slot's relative Frobenius error ``||dW - dW_k|| / ||dW||``. ``adapted``: see
    ``adapter_deltas`` (called only when the file alone is not enough)."""
    dst = Path(dst)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"squeeze: rank must be a positive integer, got {k!r}")
    if dst.exists():
        raise ValueError(f"squeeze: {dst} exists; choose another output")
    meta, deltas, tensors = adapter_deltas(src, adapted)
    out, errors = {}, {}
    for layer in meta["layers"]:
        for slot in layer["slots"]:
            name = layer["name"] if slot == "weight" else f"{layer['name']}:{slot}"
            dw = deltas[name]
            if k > min(dw.shape):
                raise ValueError(f"squeeze: rank {k} exceeds layer {name} ({dw.shape[0]}x{dw.shape[1]})")
            u, s, vh = randomized_svd(dw, k, **rsvd)
            b, a = (u * s).float(), vh.float()
            prefix = f"{layer['name']}.adapters.{slot}."
            out[prefix + "A"], out[prefix + "B"] = a.contiguous(), b.contiguous()
            norm = float(dw.norm())
            errors[name] = float((dw - b @ a).norm()) / norm if norm > 0 else 0.0
    out |= {key: v for key, v in tensors.items() if key.startswith(SAVED_PREFIX)}
    old = meta["config"]
    keep = ("targets", "slices", "fused", "modules_to_save")
    cfg = make_config("lora", r=k, alpha=float(k), **{f: old[f] for f in keep if f in old})
    new_meta = {
        "format": FORMAT, "version": meta.get("version", 2), "method": "lora",
        "config": _config_dict(cfg),
        "layers": [
            {key: v for key, v in layer.items() if key not in ("ranks", "base_sha256")}
            for layer in meta["layers"]
        ],
        "modules_to_save": meta.get("modules_to_save", []),
        "squeezed": {"from_method": meta["method"], "rank": k},
    }
    _write_folder(dst, new_meta, out)
    return {"from_method": meta["method"], "rank": k, "relative_error": errors}


def _write_folder(dst: Path, meta: dict, tensors: dict[str, Tensor]) -> None:
    import json

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}."))
    try:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT})
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
