"""lorakit.core: every method written once, attached anywhere through hosts.

from lorakit.core import inject, make_config, merge, save_adapter
report = inject(model, make_config("block_lora", r=4, targets=("clip-qkv",)))
inject(model, make_config("lora", r=2, targets=("clip-qkv",)), name="other")
set_adapter(model, ["default", "other"])     # both active: their deltas add

Modules, one role each: ``method`` (the ``Method`` base and its declared hooks),
``registry`` (``MethodSpec``, ``register``, ``make_config``), ``methods`` (one file per
built-in method, registered in one list), ``targets`` (target patterns and presets),
``hosts`` / ``layout`` (wrapping layers), ``inject``, ``adapters``, ``api``, ``io``,
``peft``, ``protocol`` (the training-loop hooks), ``sltrain_full`` (SLTrain as a
full-weight replacement: ``replace_weights``).
"""

from . import protocol
from .adapters import (
    active_adapters,
    adapter_methods,
    adapter_names,
    delete_adapter,
    disable_adapter,
    hosts,
    named_hosts,
    named_methods,
    set_adapter,
)
from .api import (
    active_methods,
    after_optimizer_step,
    disable,
    enable,
    merge,
    regularization_loss,
    remove_adapter,
    trainable_parameters,
    unmerge,
)
from .hosts import Conv2dHost, FusedHost, FusedQKVHost, Host, LinearHost
from .inject import InjectReport, LayerReport, inject
from .inproj_host import InProjHost
from .io import (
    adapter_state,
    atomic_write,
    load_adapter,
    read_adapter_config,
    save_adapter,
)
from .layout import HOSTS
from .method import AdapterConfig, FactoredMethod, Method, SlotInfo
from .methods import (
    LARGO,
    ALLoRAConfig,
    AltLoRAConfig,
    BlockLoRA,
    BlockLoRAConfig,
    CompLoRA,
    CompLoRAConfig,
    DiffoRAConfig,
    FoRA,
    FoRAConfig,
    GORPConfig,
    IncreLoRAConfig,
    LARGOConfig,
    LoCAConfig,
    LoLDUConfig,
    LoRA,
    LoRAConfig,
    LoRAGGPOConfig,
    LoRASBConfig,
    LoRASqueezeConfig,
    NOLAConfig,
    RandLoRAConfig,
    S2LoRA,
    S2LoRAConfig,
    SoRAConfig,
    SVFitConfig,
    UniLoRAConfig,
    VeRAConfig,
)
from .mha_host import MHAHost
from .peft import export_peft, import_peft
from .quant import (
    QuantLinear,
    dequantize,
    load_quantized,
    merge_quantized,
    model_bytes,
    quantize,
    save_quantized,
)
from .registry import METHODS, MethodSpec, list_methods, make_config, register
from .saved_modules import SavedModule
from .sltrain_full import SLTrainLinear, SLTrainWeightsConfig, densify, replace_weights
from .table import method_table
from .targets import PRESETS


def __getattr__(name: str):
    """The config class of any registered method, e.g. one registered after import."""
    for spec in METHODS.values():
        if spec.config.__name__ == name:
            return spec.config
    raise AttributeError(f"module 'lorakit.core' has no attribute {name!r}")


__all__ = [
    "active_adapters",
    "adapter_methods",
    "adapter_names",
    "delete_adapter",
    "disable_adapter",
    "named_methods",
    "set_adapter",
    "active_methods",
    "FusedHost",
    "InProjHost",
    "SavedModule",
    "after_optimizer_step",
    "disable",
    "enable",
    "merge",
    "protocol",
    "regularization_loss",
    "remove_adapter",
    "trainable_parameters",
    "unmerge",
    "HOSTS",
    "Conv2dHost",
    "FusedQKVHost",
    "Host",
    "LinearHost",
    "MHAHost",
    "PRESETS",
    "InjectReport",
    "LayerReport",
    "hosts",
    "inject",
    "list_methods",
    "make_config",
    "named_hosts",
    "adapter_state",
    "atomic_write",
    "export_peft",
    "import_peft",
    "load_adapter",
    "read_adapter_config",
    "save_adapter",
    "LARGO",
    "METHODS",
    "MethodSpec",
    "register",
    "AdapterConfig",
    "FactoredMethod",
    "SlotInfo",
    "BlockLoRA",
    "CompLoRA",
    "FoRA",
    "LoRA",
    "Method",
    "S2LoRA",
    "method_table",
    "QuantLinear",
    "dequantize",
    "load_quantized",
    "merge_quantized",
    "model_bytes",
    "quantize",
    "save_quantized",
    "ALLoRAConfig",
    "AltLoRAConfig",
    "BlockLoRAConfig",
    "CompLoRAConfig",
    "DiffoRAConfig",
    "FoRAConfig",
    "GORPConfig",
    "IncreLoRAConfig",
    "LARGOConfig",
    "LoCAConfig",
    "LoLDUConfig",
    "LoRAConfig",
    "LoRAGGPOConfig",
    "LoRASBConfig",
    "LoRASqueezeConfig",
    "NOLAConfig",
    "RandLoRAConfig",
    "S2LoRAConfig",
    "SoRAConfig",
    "SVFitConfig",
    "UniLoRAConfig",
    "VeRAConfig",
    "QLoRAConfig",
    "LoftQConfig",
    "LQLoRAConfig",
    "QWHAConfig",
    "BayesianLoRAConfig",
    "SLTrainConfig",
    "TLoRAConfig",
    "DRSLoRAConfig",
    "SLTrainLinear",
    "SLTrainWeightsConfig",
    "densify",
    "replace_weights",
]
