"""The fine-tuning methods compared under one step budget, their weights on disk, WiSE-FT.

    linear_probe  train the head only
    full          train every weight (full fine-tuning)
    sltrain_full  the backbone's MLP Linears replaced by SLTrain layers (s B A + S, no dense
                  weight; ``lorakit.data.runtime.replaced``), + the head when ``train_head``
    lora, largo,  any method of the lorakit registry (``lorakit methods``) on the backbone
    vera, ...     targets (+ the head when ``train_head``); the demo's are lora and largo

WiSE-FT (Wortsman et al.): ``theta(alpha) = (1 - alpha) * theta_0 + alpha * theta_ft`` over
every weight, with adapters merged into the fine-tuned weights first. The formula is
written so that alpha 0 and 1 give the two endpoints bit for bit.

Saved weights (``run/adapter``): for lora/largo the lorakit adapter files (``save_adapter``);
with ``train_head`` the head is one of the adapter's ``modules_to_save``, so its trained copy
is in ``adapter.safetensors`` under ``modules_to_save.head.*``. ``head.safetensors`` for
``linear_probe``, ``weights.safetensors`` for ``full`` (the whole classifier), the replaced
layers (``adapter_config.json`` + ``adapter.safetensors``, see ``lorakit.data.runtime.replaced``)
and the head for ``sltrain_full``, and
``ood_method.json`` naming the method. Legacy folders (written before modules_to_save) hold
``head.safetensors`` beside the adapter: ``load_weights`` still reads it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lorakit.core import (
    densify,
    inject,
    list_methods,
    load_adapter,
    make_config,
    named_hosts,
    read_adapter_config,
    remove_adapter,
    save_adapter,
)
from lorakit.data.runtime.replaced import (
    load_replaced,
    replace,
    replacement_config,
    save_replaced,
)
from lorakit.data.weight_methods import REPLACEMENT_METHODS, is_replacement

# every lorakit adapter method (the registry: LARGO, LoRA, and the catalogues) trains here;
# GORP, which also trains base weights, is refused by check_method_supported
from .config import WHOLE_MODEL_METHODS, MethodConfig  # noqa: E402, F401  (old home)

ADAPTER_METHODS = tuple(list_methods())
METHODS = (*WHOLE_MODEL_METHODS, *REPLACEMENT_METHODS, *ADAPTER_METHODS)


def replacement(cfg: MethodConfig, default_targets: tuple[str, ...]):
    """The ``SLTrainWeightsConfig`` of a replacement method (``sltrain_full``): ``r``,
    ``alpha`` and ``hyper`` (density, init, seed, recompute); ``targets: auto`` keeps the
    backbone's MLP Linears (its attention is nn.MultiheadAttention, a ResNet has convs)."""
    if cfg.targets == "auto":
        targets = tuple(t for t in default_targets if "mlp" in t)
        if not targets:
            raise ValueError(f"adapter.method {cfg.method} replaces nn.Linear layers and this "
                             f"backbone's default targets {list(default_targets)} have none; "
                             "set adapter.targets to Linear layers (or use a ViT backbone)")
    else:
        targets = tuple([cfg.targets] if isinstance(cfg.targets, str) else cfg.targets)
    return replacement_config(cfg.method, {"r": cfg.r, "alpha": cfg.alpha, **cfg.hyper}, targets)


def prepare(model: nn.Module, cfg: MethodConfig, default_targets: tuple[str, ...],
            inject_fn=inject) -> str:
    """Set what trains (in place); returns a one-line description (the inject report head).
    ``inject_fn(model, adapter_config)``: how the adapter goes in (the shared run's
    ``QuantizedBase.inject`` quantizes the base first)."""
    cfg.validate()
    if is_replacement(cfg.method):  # the targets' dense weights replaced (sltrain_full)
        names = replace(model, replacement(cfg, default_targets))
        model.head.requires_grad_(cfg.train_head)
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return f"{cfg.method}: {len(names)} Linear layers replaced; {n:,} trainable"
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return f"full fine-tuning: {sum(p.numel() for p in model.parameters()):,} trainable"
    if cfg.method == "linear_probe":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.head.parameters():
            p.requires_grad_(True)
        return f"linear probe: {sum(p.numel() for p in model.head.parameters()):,} trainable"
    targets = (
        default_targets
        if cfg.targets == "auto"
        else tuple([cfg.targets] if isinstance(cfg.targets, str) else cfg.targets)
    )
    acfg = make_config(
        cfg.method,
        r=cfg.r,
        alpha=cfg.alpha,
        dropout=cfg.dropout,
        targets=targets,
        slices=tuple(cfg.slices),
        modules_to_save=("head",) if cfg.train_head else (),
        **cfg.hyper,
    )
    # the head, when trained, gets a trainable copy (a SavedModule) that save_adapter carries
    report = inject_fn(model, acfg)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return str(report).splitlines()[0] + f"; with head: {n:,} trainable"


def save_weights(model: nn.Module, method: str, folder: str | Path, replaced=None) -> Path:
    """``replaced``: the ``SLTrainWeightsConfig`` of a replacement run (its layers and the
    head are saved)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if method in ADAPTER_METHODS:
        save_adapter(model, folder)
    if is_replacement(method):
        save_replaced(model, replaced, folder, method)
    if method == "full":
        save_file(
            {k: v.detach().contiguous() for k, v in model.state_dict().items()},
            str(folder / "weights.safetensors"),
        )
    if method in ("linear_probe", "full") or is_replacement(method):  # no adapter carries it
        save_file(
            {k: v.detach().contiguous() for k, v in model.head.state_dict().items()},
            str(folder / "head.safetensors"),
        )
    (folder / "ood_method.json").write_text(json.dumps({"method": method}, indent=2))
    return folder


def load_weights(model: nn.Module, folder: str | Path) -> str:
    """Apply saved weights to a freshly built classifier; returns the method name."""
    folder = Path(folder)
    meta = folder / "ood_method.json"
    if not meta.is_file():
        raise ValueError(f"{folder} holds no fine-tuned weights (ood_method.json is missing)")
    method = json.loads(meta.read_text()).get("method")
    if method not in METHODS:
        raise ValueError(f"{meta}: unknown method {method!r}")
    if method in ADAPTER_METHODS:
        load_adapter(model, folder)
        legacy = folder / "head.safetensors"
        if not read_adapter_config(folder).get("modules_to_save") and legacy.is_file():
            _load_into(model.head, legacy)  # a folder written before modules_to_save
        return method
    if method == "full":
        _load_into(model, folder / "weights.safetensors")
    if is_replacement(method):
        load_replaced(model, folder)
    _load_into(model.head, folder / "head.safetensors")
    return method


def _load_into(module: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise ValueError(f"missing weights file {path}")
    try:
        module.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit this backbone: {e}") from None


@torch.no_grad()
def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The classifier's weights with any adapter merged in (the model is left untouched)."""
    m = copy.deepcopy(model)
    if named_hosts(m):
        remove_adapter(m, merge_first=True)
    densify(m)  # replaced layers (sltrain_full) back to nn.Linear: W = s B A + S
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


@torch.no_grad()
def interpolate(
    pre: dict[str, torch.Tensor], ft: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """WiSE-FT weights ``(1 - alpha) * pre + alpha * ft`` (exact at alpha 0 and 1)."""
    if set(pre) != set(ft):
        diff = sorted(set(pre) ^ set(ft))[:5]
        raise ValueError(f"WiSE-FT: the two state dicts differ in keys, e.g. {diff}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"WiSE-FT alpha must be in [0, 1], got {alpha}")
    out = {}
    for k, p in pre.items():
        f = ft[k]
        if not p.is_floating_point():
            if not torch.equal(p, f):
                raise ValueError(f"WiSE-FT: non-float tensor {k} differs between the endpoints")
            out[k] = p.clone()
            continue
        # in float64, alpha = 0 gives p + 0 * f = p and alpha = 1 gives 0 * p + f = f exactly
        out[k] = ((1.0 - alpha) * p.double() + alpha * f.double()).to(p.dtype)
    return out


def wise_model(pretrained: nn.Module, pre: dict, ft: dict, alpha: float) -> nn.Module:
    """A copy of the (adapter-free) ``pretrained`` classifier holding the WiSE-FT weights."""
    m = copy.deepcopy(pretrained)
    m.load_state_dict(interpolate(pre, ft, alpha))
    return m.eval()
