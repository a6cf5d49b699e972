"""Few-shot training of CLIP adapters (Lightning).

``adapter_config(section)`` turns the ``adapter:`` config section (method, towers,
modules, and the method's own hyper-parameters) into a core config; ``FewShotModule``
trains it with cross-entropy on ``scale * cos(image, text)``, AdamW and a cosine schedule
(the CLIP-LoRA recipe). Only adapter tensors train; the network is ``self.model`` (a
``ClipClassifier``), as the shared Lightning callbacks expect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F

from lorakit.core import make_config, regularization_loss, trainable_parameters
from lorakit.core.methods import AdapterConfig

from .classifier import ClipClassifier
from .datasets import StepBatches

TOWERS = {
    "vision": (
        r"visual\.transformer\.resblocks\.\d+\.attn",
        r"visual\.transformer\.resblocks\.\d+\.mlp\.(c_fc|c_proj)",
    ),
    "text": (
        r"transformer\.resblocks\.\d+\.attn",
        r"transformer\.resblocks\.\d+\.mlp\.(c_fc|c_proj)",
    ),
}
MODULES = ("q", "k", "v", "o", "mlp")


def adapter_config(section: dict) -> AdapterConfig:
    """``{method, towers: both|vision|text, modules: [q, k, v, o, mlp], **hyper}`` -> config.

    The CLIP-LoRA default: lora, r=2, alpha=1, dropout=0.25 on q, k, v of both towers.
    """
    section = dict(section)
    method = section.pop("method", "lora")
    towers = section.pop("towers", "both")
    modules = section.pop("modules", ["q", "k", "v"])
    modules = [modules] if isinstance(modules, str) else list(modules)
    if "qkv" in modules:
        modules = [m for m in modules if m != "qkv"] + ["q", "k", "v"]
    bad = [m for m in modules if m not in MODULES]
    if bad or not modules:
        raise ValueError(
            f"adapter.modules: {bad or modules} not allowed; choose from {MODULES} (or 'qkv')"
        )
    names = {"both": ("vision", "text"), "vision": ("vision",), "text": ("text",)}.get(towers)
    if names is None:
        raise ValueError(f"adapter.towers must be both, vision or text; got {towers!r}")
    slices = tuple(s for s in ("q", "k", "v", "o") if s in modules)
    targets = []
    for tower in names:
        attn, mlp = TOWERS[tower]
        targets += [attn] if slices else []
        targets += [mlp] if "mlp" in modules else []
    return make_config(method, targets=tuple(targets), slices=slices or ("q", "k", "v"), **section)


@dataclass
class OptimConfig:
    """The ``optim:`` section. ``batch_size`` is the global batch (split across DDP ranks)."""

    lr: float = 2e-4
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 32
    warmup_steps: int = 0
    schedule: str = "cosine"  # or "constant"

    def validate(self) -> None:
        # YAML reads "1e-3" (no dot) as a string: coerce, naming the field when it fails
        for name, kind in (
            ("lr", float),
            ("weight_decay", float),
            ("batch_size", int),
            ("warmup_steps", int),
        ):
            try:
                setattr(self, name, kind(getattr(self, name)))
            except (TypeError, ValueError):
                raise ValueError(
                    f"optim.{name} must be a number, got {getattr(self, name)!r}"
                ) from None
        self.betas = tuple(float(b) for b in self.betas)
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"optim.schedule must be cosine or constant, got {self.schedule!r}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be positive, got {self.lr}")


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base lr at ``step``: linear warmup, then cosine to 0 (or constant)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


class FewShotModule(L.LightningModule):
    """Trains the adapters of ``model`` for ``total_steps`` steps on ``batches``.

    The runtime's ``StepSeed`` re-seeds torch from ``(seed, step)`` at every micro-batch,
    so adapter dropout is the same whether or not the run was interrupted and resumed.
    """

    def __init__(
        self,
        model: ClipClassifier,
        batches: StepBatches,
        optim: OptimConfig,
        total_steps: int,
        seed: int = 0,
    ):
        super().__init__()
        self.model, self.batches, self.optim = model, batches, optim
        self.total_steps, self.seed = total_steps, seed

    def train_dataloader(self) -> StepBatches:
        # called after a checkpoint is restored: continue the stream at the resumed step
        self.batches.start_step = self.trainer.global_step * self.trainer.accumulate_grad_batches
        return self.batches

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.model(images)
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        self.log("train_loss", loss, prog_bar=True, batch_size=len(labels), sync_dist=False)
        self.log("train_acc", acc, prog_bar=True, batch_size=len(labels))
        return loss + regularization_loss(self.model)

    def configure_optimizers(self):
        params = trainable_parameters(self.model)
        if not params:
            raise ValueError("no trainable adapter parameters: check adapter.targets/towers")
        opt = torch.optim.AdamW(
            params,
            lr=self.optim.lr,
            weight_decay=self.optim.weight_decay,
            betas=tuple(self.optim.betas),
        )
        o = self.optim
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_factor(s, self.total_steps, o.warmup_steps, o.schedule)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def state_dict(self, *args, **kwargs):
        # checkpoints hold the adapter tensors only; the frozen backbone is rebuilt from config
        full = super().state_dict(*args, **kwargs)
        keep = {n for n, p in self.named_parameters() if p.requires_grad}
        keep |= {n for n, _ in self.named_buffers() if ".adapters." in n}
        return type(full)((k, v) for k, v in full.items() if k in keep)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        missing = {n for n, p in self.named_parameters() if p.requires_grad} - set(state_dict)
        if missing:
            raise ValueError(f"checkpoint does not fit this adapter: missing {sorted(missing)[:5]}")
        return super().load_state_dict(state_dict, strict=False, assign=assign)
