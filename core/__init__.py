"""lorakit.core: every method written once, attached anywhere through hosts.

from lorakit.core import inject, make_config, merge, save_adapter
report = inject(model, make_config("block_lora", r=4, targets=("clip-qkv",)))
inject(model, make_config("lora", r=2, targets=("clip-qkv",)), name="other")
set_adapter(model, ["default", "other"])     # both active: their deltas add
"""

from .adapters import (
    active_adapters,
    adapter_names,
    delete_adapter,
    disable_adapter,
    named_methods,
    set_adapter,
)
from .api import (
    active_methods,
    after_optimizer_step,
    disable,
    enable,
    merge,
    methods,
    regularization_loss,
    remove_adapter,
    trainable_parameters,
    unmerge,
)
from .hosts import Conv2dHost, FusedHost, FusedQKVHost, Host, LinearHost
from .inject import (
    PRESETS,
    InjectReport,
    LayerReport,
    hosts,
    inject,
    list_methods,
    make_config,
    named_hosts,
)
from .inproj_host import InProjHost
from .io import (
    adapter_state,
    atomic_write,
    load_adapter,
    read_adapter_config,
    save_adapter,
)
from .layout import HOSTS
from .methods import (
    LARGO,
    METHODS,
    AdapterConfig,
    BlockLoRA,
    BlockLoRAConfig,
    CompLoRA,
    CompLoRAConfig,
    FoRA,
    FoRAConfig,
    LARGOConfig,
    LoRA,
    LoRAConfig,
    Method,
    S2LoRA,
    S2LoRAConfig,
)
from .mha_host import MHAHost
from .peft import export_peft, import_peft
from .saved_modules import SavedModule
from .table import method_table

__all__ = [
    "active_adapters",
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
    "methods",
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
    "AdapterConfig",
    "BlockLoRA",
    "BlockLoRAConfig",
    "CompLoRA",
    "CompLoRAConfig",
    "FoRA",
    "FoRAConfig",
    "LARGOConfig",
    "LoRA",
    "LoRAConfig",
    "Method",
    "S2LoRA",
    "S2LoRAConfig",
    "method_table",
]
