"""The method registry: method name -> ``MethodSpec``, a plain dict filled by explicit
``register`` calls (the built-in methods in ``lorakit.core.methods``, in one list).

A spec names the method's config dataclass and its per-slot layer class; everything else
it carries is what the method declares on its layer class in its own file (the hooks of
``lorakit.core.method.Method``): its optimizer, ``end_task``, the hyper-parameters that make
the tiny test layers valid, on which hosts the adapter file alone cannot rebuild the update,
and why ``merge`` refuses it. Shared code (``inject``, ``io``, ``contract``, ``squeeze``,
``api``) reads the spec and never names a method, so adding a method is one file (plus its
tests) and a ``register`` call::

    register(MethodSpec("scaled", ScaledConfig, Scaled))

``make_config`` also reads PEFT's field names (``target_modules``, ``lora_alpha``,
``lora_dropout``, ``use_rslora``) as aliases of lorakit's.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass

from .method import AdapterConfig, Method

# PEFT's LoraConfig field -> lorakit's AdapterConfig field
PEFT_ALIASES = {
    "target_modules": "targets",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "use_rslora": "rslora",
}


@dataclass(frozen=True)
class MethodSpec:
    """One registry entry. Indexing gives the older ``(config, layer)`` pair:
    ``METHODS[name][0]`` is the config class, ``METHODS[name][1]`` the layer class."""

    name: str
    config: type[AdapterConfig]
    layer: type[Method]

    def __getitem__(self, i: int):
        return (self.config, self.layer)[i]

    @property
    def optimizer(self) -> Callable | None:
        """The method's own optimizer factory ``(model, lr, **kw)``, or None."""
        return self.layer.make_optimizer

    @property
    def end_task(self) -> Callable | None:
        """``(model, optimizer)`` closing a continual task, or None when it keeps no state."""
        return None if self.layer.end_task is Method.end_task else self.layer.end_task

    @property
    def test_hyper(self) -> dict:
        return dict(self.layer.test_hyper)

    @property
    def merge_refusal(self) -> str:
        return self.layer.merge_refusal

    def from_file(self, hosts: set[str], base_state: bool = False) -> bool:
        """Whether an adapter file of this method on layers of ``hosts`` kinds is enough
        to rebuild each slot's update (``squeeze``). A method with buffers the base
        determines (``from_base``) needs a file that holds them (``base_state``: one
        written before they were left out)."""
        refused = self.layer.not_from_file
        if refused is None or set(hosts) & refused:
            return False
        return base_state or not self.layer.from_base

    def validate(self) -> None:
        if not (isinstance(self.config, type) and issubclass(self.config, AdapterConfig)):
            raise TypeError(f"method {self.name!r}: config must be an AdapterConfig subclass")
        if not (isinstance(self.layer, type) and issubclass(self.layer, Method)):
            raise TypeError(f"method {self.name!r}: layer must be a Method subclass")
        if not dataclasses.is_dataclass(self.config):
            raise TypeError(f"method {self.name!r}: {self.config.__name__} must be a dataclass")
        for what, value in (("config", self.config.method), ("layer", self.layer.name)):
            if value != self.name:
                raise ValueError(
                    f"method {self.name!r}: its {what} class says {value!r}; set "
                    f"{'method' if what == 'config' else 'name'} = {self.name!r}"
                )


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry (after its checks); a taken name needs ``replace``."""
    spec.validate()
    if spec.name in METHODS and not replace:
        raise ValueError(f"method {spec.name!r} is already registered")
    METHODS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    METHODS.pop(name, None)


def method_spec(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def list_methods() -> list[str]:
    return list(METHODS)


def _coerce(cls: type, name: str, value):
    """YAML/JSON give lists where the dataclass wants tuples."""
    hint = typing.get_type_hints(cls).get(name)
    if isinstance(value, list) and "tuple" in str(hint):
        return tuple(value)
    if isinstance(value, str) and name == "targets":
        return (value,)
    return value


def _peft_names(name: str, hyper: dict) -> dict:
    out = {}
    for key, value in hyper.items():
        field = PEFT_ALIASES.get(key, key)
        if field in out:
            raise ValueError(f"{name}: {field} is given twice (as {field} and as its PEFT name)")
        out[field] = value
    return out


def make_config(name: str, **hyper) -> AdapterConfig:
    """The config dataclass of method ``name`` with ``hyper`` set; unknown names or
    fields raise ``ValueError`` listing the valid ones. PEFT's names are accepted too:
    ``target_modules``, ``lora_alpha``, ``lora_dropout``, ``use_rslora``."""
    cls = method_spec(name).config
    hyper = _peft_names(name, hyper)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in hyper if k not in valid]
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {unknown}; valid fields: {', '.join(valid)}")
    cfg = cls(**{k: _coerce(cls, k, v) for k, v in hyper.items()})
    cfg.validate()
    return cfg
