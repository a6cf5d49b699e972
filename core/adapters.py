"""Named adapters: list, switch, disable and delete them; iterate over their methods.

A model can hold several adapters (even of different methods) on the same layers, each
under a name (``"default"`` when none is given). The *active* ones add their deltas (so
several active adapters sum) and are the trainable ones; the rest are kept but not
applied. State lives on the hosts, so every call also works on a parent module of the
one given to ``inject``.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from .hosts import Host
from .method import Method
from .saved_modules import SavedModule


def hosts(model: nn.Module) -> list[Host]:
    return [m for m in model.modules() if isinstance(m, Host)]


def named_hosts(model: nn.Module) -> list[tuple[str, Host]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Host)]


def named_adapted(model: nn.Module) -> list[tuple[str, Host | SavedModule]]:
    """Hosts and ``modules_to_save`` wrappers, by module name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (Host, SavedModule))]


def _members(m: Host | SavedModule) -> nn.ModuleDict:
    return m.adapters if isinstance(m, Host) else m.copies


def named_methods(model: nn.Module, adapter: str | None = None) -> list[tuple[str, str, Method]]:
    """``(layer name, slot, method)`` for every adapter slot (only ``adapter``'s if given).

    The slot is ``"weight"`` for whole-weight hosts and ``q``/``k``/``v``/``o`` for
    attention slices; ``method.adapter_name`` says which adapter a method belongs to.
    """
    out = []
    for name, host in named_hosts(model):
        for a, slots in host.adapters.items():
            if adapter is None or a == adapter:
                out.extend((name, slot, m) for slot, m in slots.items())
    return out


def adapter_methods(model: nn.Module, adapter: str | None = None) -> list[Method]:
    """Method instances of every adapter (or only ``adapter``'s), layer by layer."""
    return [m for _, _, m in named_methods(model, adapter)]


def adapter_names(model: nn.Module) -> list[str]:
    """Every adapter name in the model, in order of first appearance."""
    names: dict[str, None] = {}
    for _, m in named_adapted(model):
        names.update(dict.fromkeys(_members(m)))
    return list(names)


def active_adapters(model: nn.Module) -> list[str]:
    for _, m in named_adapted(model):
        return list(m.active_names)
    return []


def adapter_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """Adapter ``name``'s parameters, shared ones (S2-LoRA's group pairs) once."""
    found: dict[int, nn.Parameter] = {}
    for _, m in named_adapted(model):
        if name in _members(m):
            found.update((id(p), p) for p in _members(m)[name].parameters())
    return list(found.values())


def adapter_parameter_ids(model: nn.Module) -> set[int]:
    return {id(p) for _, m in named_adapted(model) for p in _members(m).parameters()}


def apply_trainability(model: nn.Module) -> None:
    """Active adapters train (unless loaded for inference); inactive ones are frozen."""
    for _, m in named_adapted(model):
        for a, sub in _members(m).items():
            on = a in m.active_names and a not in m.frozen
            for p in sub.parameters():
                p.requires_grad_(on)


def _require(model: nn.Module, names: Iterable[str]) -> None:
    have = adapter_names(model)
    if not have:
        raise ValueError(
            "model has no lorakit adapter: call inject(model, config) or load_adapter first"
        )
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(f"no adapter named {missing[0]!r} in the model; it has {have}")


def set_adapter(model: nn.Module, names: str | list[str]) -> None:
    """Make ``names`` the active adapters (their deltas add) and the trainable ones."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError("set_adapter needs at least one adapter name")
    _require(model, names)
    merged = {n for _, h in named_hosts(model) for n in h.merged_names}
    if not merged <= set(names):
        raise ValueError(
            f"adapter(s) {sorted(merged - set(names))} are merged into the weights: "
            "unmerge(model) before switching them off"
        )
    for _, m in named_adapted(model):
        m.active_names = list(names)
    apply_trainability(model)


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` everywhere; layers left with no adapter are unwrapped. When
    no active adapter is left, the first remaining one becomes active."""
    _require(model, [name])
    for path, m in named_adapted(model):
        if isinstance(m, Host) and name in m.adapters:
            if m.merged:
                keep = [n for n in m.merged_names if n != name]
                m.unmerge()
                del m.adapters[name]
                m.merge(keep)
            else:
                del m.adapters[name]
        elif isinstance(m, SavedModule) and name in m.copies:
            del m.copies[name]
        m.active_names = [n for n in m.active_names if n != name]
        m.frozen.discard(name)
        if isinstance(m, Host):
            m.configs.pop(name, None)
        if not len(_members(m)):
            parent, _, child = path.rpartition(".")
            inner = m.base if isinstance(m, Host) else m.original
            setattr(model.get_submodule(parent) if parent else model, child, inner)
    left = adapter_names(model)
    if left and not active_adapters(model):
        set_adapter(model, left[0])


class disable_adapter:
    """Run the base model only (adapters kept, not applied), until ``enable(model)``.

    Also a context manager that restores the previous state on exit:
    ``with disable_adapter(model): base_out = model(x)``.
    """

    def __init__(self, model: nn.Module):
        _require(model, [])
        self._items = [m for _, m in named_adapted(model)]
        self._before = [m.disabled for m in self._items]
        for m in self._items:
            m.disabled = True

    def __enter__(self) -> disable_adapter:
        return self

    def __exit__(self, *exc) -> None:
        for m, was in zip(self._items, self._before, strict=True):
            m.disabled = was


def enable_adapter(model: nn.Module) -> None:
    _require(model, [])
    for _, m in named_adapted(model):
        m.disabled = False
