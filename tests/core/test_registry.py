"""The method registry and the declared hooks: a method written in one file (here: in this
test) works everywhere through ``register``; a misspelt hook is an error at once."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import lorakit.core
from lorakit.core import inject, list_methods, make_config, method_table, protocol, save_adapter
from lorakit.core.contract import check_contract, perturb, supported_pairs, tiny_config
from lorakit.core.method import AdapterConfig, FactoredMethod, Method, SlotInfo, kaiming_
from lorakit.core.methods import BUILTIN, LoRA
from lorakit.core.registry import METHODS, MethodSpec, register, unregister
from lorakit.core.squeeze import adapter_deltas
from lorakit.core.zoo import ZOO, ZOO_HOST, build

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- a new method
# Everything a method needs, in one place: this is the whole of "adding a method".


@dataclass
class TwinConfig(AdapterConfig):
    """A LoRA whose ``B`` starts at zero and whose before-step hook counts calls."""

    method = "twin_test"


class Twin(FactoredMethod):
    name = "twin_test"
    formula = "r*(d_in + d_out) per layer"
    test_hyper = {"alpha": 2.0}

    def __init__(self, cfg: TwinConfig, slot: SlotInfo):
        super().__init__(cfg, slot)
        self.A = nn.Parameter(kaiming_(torch.empty(self.r, self.d_in)))
        self.B = nn.Parameter(torch.zeros(self.d_out, self.r))
        self.steps_seen = 0

    def factors(self) -> tuple[Tensor, Tensor]:
        return self.A, self.B

    def before_step(self) -> None:
        self.steps_seen += 1


@pytest.fixture
def twin():
    spec = register(MethodSpec("twin_test", TwinConfig, Twin))
    yield spec
    unregister("twin_test")


def test_a_registered_method_keeps_the_contract_on_every_host(twin, tmp_path):
    pairs = [(m, z) for m, z in supported_pairs() if m == "twin_test"]
    assert {z for _, z in pairs} == set(ZOO)  # it declares no host limits: all of them
    for _, zoo in pairs:
        check_contract("twin_test", zoo, workdir=str(tmp_path))


def test_a_registered_method_reaches_every_shared_tool(twin, tmp_path):
    assert list_methods()[-1] == "twin_test" and list_methods()[:len(BUILTIN)] == list(BUILTIN)
    assert "twin_test  -  " in method_table()
    assert lorakit.core.TwinConfig is TwinConfig  # exported like the built-in configs
    model, x, targets, slices = build("fused_qkv")
    inject(model, tiny_config("twin_test", targets, slices))
    assert all(m.s == 1.0 for m in lorakit.core.adapter_methods(model))  # test_hyper applied
    perturb(model)
    _, deltas, _ = adapter_deltas(save_adapter(model, tmp_path / "a"))  # squeeze's reader
    slots = lorakit.core.adapter_methods(model)
    assert len(deltas) == len(slots) == len(slices)
    model(x).sum().backward()
    protocol.before_step(model)  # the declared hook is called, nothing probes for it
    assert [m.steps_seen for m in slots] == [1] * len(slots)


def test_register_checks_the_entry(twin):
    with pytest.raises(ValueError, match="already registered"):
        register(MethodSpec("twin_test", TwinConfig, Twin))
    with pytest.raises(ValueError, match="its config class says 'twin_test'"):
        register(MethodSpec("other", TwinConfig, Twin))
    with pytest.raises(TypeError, match="layer must be a Method subclass"):
        register(MethodSpec("twin_test", TwinConfig, nn.Linear), replace=True)


def test_specs_index_as_the_older_pairs():
    config, layer = METHODS["lora"]
    assert (config, layer) == (METHODS["lora"].config, LoRA) == BUILTIN["lora"]
    assert METHODS["gorp"].optimizer is not None and METHODS["gorp"].end_task is not None
    assert METHODS["lora"].optimizer is None and METHODS["lora"].end_task is None
    assert not METHODS["unilora"].from_file({"linear"})
    assert METHODS["vera"].from_file({"linear"}) and not METHODS["vera"].from_file({"conv2d"})


# --------------------------------------------------------------------------- declared hooks


def test_a_misspelt_hook_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match="did you mean 'after_step'"):

        class Late(LoRA):
            def after_stpe(self) -> None:
                pass

    with pytest.raises(TypeError, match="before_backward is not a hook that Method declares"):

        class Early(LoRA):
            def before_backward(self) -> None:
                pass

    with pytest.raises(TypeError, match="did you mean 'needs_prepare'"):

        class Prepared(LoRA):
            need_prepare = True


def test_own_helpers_and_declared_hooks_are_accepted():
    class Fine(LoRA):
        def before_step(self) -> None:  # declared
            pass

        def spectrum(self) -> Tensor:  # a helper of its own
            return self.A

    assert Fine.before_step is not Method.before_step


def test_the_runtime_reads_no_hook_by_name():
    """No ``getattr(x, "name")`` / ``hasattr(x, "name")`` in the files that run methods."""
    files = [
        "core/protocol.py", "core/api.py", "core/contract.py", "core/squeeze.py",
        "core/table.py", "core/registry.py", "data/runtime/methods.py",
    ]  # fmt: skip
    found = []
    for rel in files:
        for node in ast.walk(ast.parse((ROOT / rel).read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
            ):
                found.append(f"{rel}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    assert not found, found


def test_shared_files_name_no_method():
    """Method-specific knowledge lives in the method's file; squeeze's output is a LoRA."""
    allowed = {"core/contract.py": set(), "core/api.py": set(), "core/squeeze.py": {"lora"}}
    for rel, ok in allowed.items():
        strings = {
            n.value
            for n in ast.walk(ast.parse((ROOT / rel).read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        assert strings & set(METHODS) <= ok, (rel, strings & set(METHODS))


def test_every_host_kind_of_the_zoo_is_known_to_the_base():
    assert set(ZOO_HOST.values()) <= Method.hosts


# --------------------------------------------------------------------------- PEFT names


def test_make_config_reads_peft_field_names():
    peft = make_config(
        "lora", r=4, target_modules=["q_proj", "v_proj"], lora_alpha=16, lora_dropout=0.1,
        use_rslora=True,
    )  # fmt: skip
    ours = make_config(
        "lora", r=4, targets=("q_proj", "v_proj"), alpha=16, dropout=0.1, rslora=True
    )
    assert peft == ours and peft.targets == ("q_proj", "v_proj")
    assert make_config("lora", target_modules="q_proj").targets == ("q_proj",)
    with pytest.raises(ValueError, match="alpha is given twice"):
        make_config("lora", alpha=2.0, lora_alpha=4.0)


def test_every_config_class_is_exported():
    for spec in METHODS.values():
        name = spec.config.__name__
        assert getattr(lorakit.core, name) is spec.config
        assert name in lorakit.core.__all__, name

