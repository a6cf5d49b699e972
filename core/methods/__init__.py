"""The method registry: a plain dict, filled here, readable in one place."""

from __future__ import annotations

from .base import AdapterConfig, HostOps, Method, SlotInfo
from .block_lora import BlockLoRA, BlockLoRAConfig
from .comp_lora import CompLoRA, CompLoRAConfig
from .fora import FoRA, FoRAConfig
from .largo import LARGO, LARGOConfig
from .lora import LoRA, LoRAConfig
from .s2_lora import S2LoRA, S2LoRAConfig

METHODS: dict[str, tuple[type[AdapterConfig], type[Method]]] = {
    "lora": (LoRAConfig, LoRA),
    "block_lora": (BlockLoRAConfig, BlockLoRA),
    "comp_lora": (CompLoRAConfig, CompLoRA),
    "fora": (FoRAConfig, FoRA),
    "s2_lora": (S2LoRAConfig, S2LoRA),
    "largo": (LARGOConfig, LARGO),
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
]
