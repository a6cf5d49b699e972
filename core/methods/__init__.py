"""The built-in methods, registered in one readable list (``lorakit.core.registry``).

One file per method; its layer class declares what shared code needs (hooks, test
settings, mergeability). ``METHODS`` is the registry: method name -> ``MethodSpec``
(indexable as the older ``(config, layer)`` pair).
"""

from __future__ import annotations

import sys
import types

from ..registry import METHODS, MethodSpec, register
from .allora import ALLoRA, ALLoRAConfig
from .altlora import AltLoRA, AltLoRAConfig
from .base import AdapterConfig, HostOps, Method, SlotInfo
from .bayesian_lora import BayesianLoRA, BayesianLoRAConfig
from .block_lora import BlockLoRA, BlockLoRAConfig
from .comp_lora import CompLoRA, CompLoRAConfig
from .diffora import DiffoRA, DiffoRAConfig
from .drs_lora import DRSLoRA, DRSLoRAConfig
from .fora import FoRA, FoRAConfig
from .gorp import GORP, GORPConfig
from .increlora import IncreLoRA, IncreLoRAConfig
from .largo import LARGO, LARGOConfig
from .loca import LoCA, LoCAConfig
from .loftq import LoftQ, LoftQConfig
from .loldu import LoLDU, LoLDUConfig
from .lora import LoRA, LoRAConfig
from .lora_ggpo import LoRAGGPO, LoRAGGPOConfig
from .lora_sb import LoRASB, LoRASBConfig
from .lora_squeeze import LoRASqueeze, LoRASqueezeConfig
from .lq_lora import LQLoRA, LQLoRAConfig
from .nola import NOLA, NOLAConfig
from .qlora import QLoRA, QLoRAConfig
from .qwha import QWHA, QWHAConfig
from .randlora import RandLoRA, RandLoRAConfig
from .s2_lora import S2LoRA, S2LoRAConfig
from .sltrain import SLTrain, SLTrainConfig
from .sora import SoRA, SoRAConfig
from .svfit import SVFit, SVFitConfig
from .tlora import TLoRA, TLoRAConfig
from .unilora import UniLoRA, UniLoRAConfig
from .vera import VeRA, VeRAConfig

BUILTIN: dict[str, tuple[type[AdapterConfig], type[Method]]] = {
    "lora": (LoRAConfig, LoRA),
    "block_lora": (BlockLoRAConfig, BlockLoRA),
    "comp_lora": (CompLoRAConfig, CompLoRA),
    "fora": (FoRAConfig, FoRA),
    "s2_lora": (S2LoRAConfig, S2LoRA),
    "largo": (LARGOConfig, LARGO),
    "vera": (VeRAConfig, VeRA),
    "unilora": (UniLoRAConfig, UniLoRA),
    "randlora": (RandLoRAConfig, RandLoRA),
    "nola": (NOLAConfig, NOLA),
    "loca": (LoCAConfig, LoCA),
    "svfit": (SVFitConfig, SVFit),
    "loldu": (LoLDUConfig, LoLDU),
    "lora_sb": (LoRASBConfig, LoRASB),
    "gorp": (GORPConfig, GORP),
    "sora": (SoRAConfig, SoRA),
    "increlora": (IncreLoRAConfig, IncreLoRA),
    "lora_squeeze": (LoRASqueezeConfig, LoRASqueeze),
    "diffora": (DiffoRAConfig, DiffoRA),
    "altlora": (AltLoRAConfig, AltLoRA),
    "allora": (ALLoRAConfig, ALLoRA),
    "lora_ggpo": (LoRAGGPOConfig, LoRAGGPO),
    "qlora": (QLoRAConfig, QLoRA),
    "loftq": (LoftQConfig, LoftQ),
    "lq_lora": (LQLoRAConfig, LQLoRA),
    "qwha": (QWHAConfig, QWHA),
    "bayesian_lora": (BayesianLoRAConfig, BayesianLoRA),
    "sltrain": (SLTrainConfig, SLTrain),
    "tlora": (TLoRAConfig, TLoRA),
    "drs_lora": (DRSLoRAConfig, DRSLoRA),
}

for _name, (_config, _layer) in BUILTIN.items():
    register(MethodSpec(_name, _config, _layer))


class _CallablePackage(types.ModuleType):
    """``lorakit.core.methods(model)`` was a function before this package was reachable
    under that name; it still works (prefer ``lorakit.core.adapter_methods``)."""

    def __call__(self, model, adapter: str | None = None) -> list[Method]:
        from ..adapters import adapter_methods

        return adapter_methods(model, adapter)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = [
    "BUILTIN",
    "METHODS",
    "MethodSpec",
    "AdapterConfig",
    "HostOps",
    "Method",
    "SlotInfo",
    "LoRA",
    "LoRAConfig",
    "BlockLoRA",
    "BlockLoRAConfig",
    "CompLoRA",
    "CompLoRAConfig",
    "FoRA",
    "FoRAConfig",
    "S2LoRA",
    "S2LoRAConfig",
    "LARGO",
    "LARGOConfig",
    "VeRA",
    "VeRAConfig",
    "UniLoRA",
    "UniLoRAConfig",
    "RandLoRA",
    "RandLoRAConfig",
    "NOLA",
    "NOLAConfig",
    "LoCA",
    "LoCAConfig",
    "SVFit",
    "SVFitConfig",
    "LoLDU",
    "LoLDUConfig",
    "LoRASB",
    "LoRASBConfig",
    "GORP",
    "GORPConfig",
    "SoRA",
    "SoRAConfig",
    "IncreLoRA",
    "IncreLoRAConfig",
    "LoRASqueeze",
    "LoRASqueezeConfig",
    "DiffoRA",
    "DiffoRAConfig",
    "AltLoRA",
    "AltLoRAConfig",
    "ALLoRA",
    "ALLoRAConfig",
    "LoRAGGPO",
    "LoRAGGPOConfig",
    "QLoRA",
    "QLoRAConfig",
    "LoftQ",
    "LoftQConfig",
    "LQLoRA",
    "LQLoRAConfig",
    "QWHA",
    "QWHAConfig",
    "BayesianLoRA",
    "BayesianLoRAConfig",
    "SLTrain",
    "SLTrainConfig",
    "TLoRA",
    "TLoRAConfig",
    "DRSLoRA",
    "DRSLoRAConfig",
]
