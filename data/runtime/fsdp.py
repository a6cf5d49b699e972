"""``trainer.strategy: fsdp``: adapters trained on a frozen base sharded across processes.

``AdapterFSDP`` is Lightning's ``FSDPStrategy`` (torch's ``FullyShardedDataParallel``)
set up for a frozen base with small trainable adapters:

- **wrapping**: one FSDP unit per backbone block (the classes activation checkpointing
  knows, ``lorakit.core.checkpointing.BLOCKS``), the rest in the root unit. A block holds
  frozen base weights and trainable adapter tensors side by side: with
  ``use_orig_params=True`` each keeps its own ``requires_grad`` inside the unit's flat
  parameter (without it FSDP refuses such a unit, or trains the base). Frozen 0-d
  parameters (CLIP's ``logit_scale``), which FSDP cannot shard, stay whole on every rank;
- **the CPU**: Lightning refuses ``fsdp`` without a GPU, and torch's FSDP picks the
  accelerator unless ``device_id`` names the device, so the strategy passes ``cpu``
  explicitly: FSDP then runs on gloo (tests use it; it saves no memory on one machine, it
  exercises the same code as CUDA);
- **the end of training**: outside a unit's forward its parameters are shards (on most
  ranks of size 0), so after the last step every rank gathers every parameter whole and
  the FSDP units are replaced by the modules they wrap: the pipeline saves the adapter and
  evaluates a plain model, as after ``ddp``;
- **gradient clipping** by norm goes through the FSDP root (``clip_grad_norm_`` over all
  shards; ``AdapterModule.configure_gradient_clipping``);
- **methods** whose hooks read or change their full tensors between steps (a regularizer,
  proximal steps, rank changes, their own optimizer, a prepare pass) are refused: FSDP
  hands those hooks shards. Plain LoRA-family methods (no hooks) train.

Checkpoints are Lightning's full state dict (gathered on rank 0), filtered by
``AdapterModule`` like every other strategy's; the optimizer state is keyed by parameter
name (FSDP re-registers parameters while it trains, so their order does not identify them).
A resumed ``fsdp`` run continues from its checkpoint but, unlike ``ddp``, does not yet end
bit-identical to an uninterrupted one (2 CPU processes, tiny CLIP, killed at step 3 of 10:
adapter entries off by up to 0.02 of 0.16); one process is refused (``TrainerOptions``:
FSDP with nothing to shard leaves the root unit's parameters unregistered after backward).
"""

from __future__ import annotations

from functools import partial

import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from lorakit.core import Method
from lorakit.core.checkpointing import is_block

# the per-step hooks of ``lorakit.core.method.Method`` that see a method's full tensors
STEP_HOOKS = ("regularizer", "before_step", "after_step", "step_stats", "finish", "model_after_step")


def hooked_methods(model: nn.Module) -> list[str]:
    """Names of the methods in ``model`` whose training hooks FSDP would hand shards."""
    names = set()
    for m in model.modules():
        if not isinstance(m, Method):
            continue
        cls = type(m)
        flags = cls.needs_prepare or cls.rank_changing or cls.trains_base_weights
        flags = flags or cls.make_optimizer is not None
        if flags or any(getattr(cls, h) is not getattr(Method, h) for h in STEP_HOOKS):
            names.add(cls.name)
    return sorted(names)


def unshard(root: nn.Module, params: list[tuple[nn.Module, str, nn.Parameter]]) -> nn.Module:
    """The module inside the FSDP ``root``, every parameter whole again and every nested
    FSDP unit replaced by the module it wraps (a collective: every rank calls it).

    ``params``: ``(module, name, parameter)`` of every parameter before wrapping. Outside a
    forward FSDP leaves a unit's parameters as shards, or as plain tensor attributes (the
    root unit after backward); each goes back to its module as the same ``Parameter``."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    with FSDP.summon_full_params(root, writeback=False, recurse=True):
        whole = [getattr(m, n).detach().clone() for m, n, _ in params]
    for m in list(root.modules()):
        for name, child in list(m.named_children()):
            if isinstance(child, FSDP) and m is not root:
                setattr(m, name, child.module)
    for (m, n, p), w in zip(params, whole, strict=True):
        m.__dict__.pop(n, None)
        p.data, p.grad = w, None
        m._parameters[n] = p
    return root.module


class AdapterFSDP(FSDPStrategy):
    """Lightning's FSDP strategy for adapters on a frozen base (see the module docstring)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("auto_wrap_policy", partial(_block_policy))
        kwargs.setdefault("use_orig_params", True)
        super().__init__(**kwargs)

    def _setup_model(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        hooked = hooked_methods(model)
        if hooked:
            raise ValueError(
                f"trainer.strategy fsdp: {', '.join(hooked)} runs training hooks on its full "
                "tensors, which FSDP shards between steps; use --strategy ddp"
            )
        scalars = [n for n, p in model.named_parameters() if p.dim() == 0]
        trained = [n for n in scalars if model.get_parameter(n).requires_grad]
        if trained:
            raise ValueError(
                f"trainer.strategy fsdp: FSDP cannot shard the trainable scalar {trained[0]}; "
                "use --strategy ddp"
            )
        self._params = [(m, n, p) for m in model.modules()
                        for n, p in m.named_parameters(recurse=False)]
        device = self.root_device
        return FSDP(
            module=model,
            # FSDP refuses 0-d parameters; frozen ones (CLIP's logit_scale) stay whole
            ignored_states=[model.get_parameter(n) for n in scalars] or None,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            # torch's FSDP picks an accelerator unless told: name the CPU explicitly
            device_id=device if device.type == "cpu" else device.index,
            **self.kwargs,
        )

    def optimizer_state(self, optimizer) -> dict:
        """The full optimizer state keyed by parameter *name*. (Lightning re-keys it by
        position in ``model.parameters()``, an order FSDP changes while it trains, so a
        resumed run gave each tensor another tensor's Adam moments.)"""
        from lightning.fabric.strategies.fsdp import _get_full_state_dict_context
        from lightning.pytorch.core.optimizer import LightningOptimizer
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        if self._state_dict_type != "full":
            return super().optimizer_state(optimizer)
        if isinstance(optimizer, LightningOptimizer):
            optimizer = optimizer._optimizer
        with _get_full_state_dict_context(self.model, world_size=self.world_size):
            return FSDP.optim_state_dict(self.model, optimizer)

    def on_train_end(self) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        super().on_train_end()
        if isinstance(self.model, FSDP):
            self.model = unshard(self.model, self._params)


def _block_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy: descend everywhere, wrap each backbone block."""
    return True if recurse else is_block(module)


def fsdp_root(model) -> torch.nn.Module | None:
    """The FSDP root ``model`` is, or None (a trainer's ``model`` under another strategy)."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    return model if isinstance(model, FSDP) else None
