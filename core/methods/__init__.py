"""The method registry: a plain dict, filled here, readable in one place."""

from __future__ import annotations

from .allora import ALLoRA, ALLoRAConfig
from .altlora import AltLoRA, AltLoRAConfig
from .base import AdapterConfig, HostOps, Method, SlotInfo
from .block_lora import BlockLoRA, BlockLoRAConfig
from .comp_lora import CompLoRA, CompLoRAConfig
from .diffora import DiffoRA, DiffoRAConfig
from .fora import FoRA, FoRAConfig
from .gorp import GORP, GORPConfig
from .increlora import IncreLoRA, IncreLoRAConfig
from .largo import LARGO, LARGOConfig
from .loca import LoCA, LoCAConfig
from .loldu import LoLDU, LoLDUConfig
from .lora import LoRA, LoRAConfig
from .lora_ggpo import LoRAGGPO, LoRAGGPOConfig
from .lora_sb import LoRASB, LoRASBConfig
from .lora_squeeze import LoRASqueeze, LoRASqueezeConfig
from .nola import NOLA, NOLAConfig
from .randlora import RandLoRA, RandLoRAConfig
from .s2_lora import S2LoRA, S2LoRAConfig
from .sora import SoRA, SoRAConfig
from .svfit import SVFit, SVFitConfig
from .unilora import UniLoRA, UniLoRAConfig
from .vera import VeRA, VeRAConfig

METHODS: dict[str, tuple[type[AdapterConfig], type[Method]]] = {
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
}

__all__ = [
    "METHODS",
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
]
