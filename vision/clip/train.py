"""Few-shot training of CLIP adapters (Lightning).

``adapter_config(section)`` turns the ``adapter:`` config section (method, towers,
modules, and the method's own hyper-parameters) into a core config; ``FewShotModule``
trains it with cross-entropy on ``scale * cos(image, text)``, AdamW and a cosine schedule
(the CLIP-LoRA recipe) through the runtime's ``AdapterModule``. Only adapter tensors
train; the network is ``self.model`` (a ``ClipClassifier``). ``lr_factor`` (the schedule)
lives in the runtime and is re-exported here.
"""

from __future__ import annotations

import torch.nn.functional as F

from lorakit.core import AdapterConfig, make_config
from lorakit.data.runtime import AdapterModule, Schedule, lr_factor
from lorakit.data.runtime.replaced import replacement_config
from lorakit.data.weight_methods import is_replacement, replacement_hyper

from .classifier import ClipClassifier
from .config import DEFAULTS, MODULES, OptimConfig
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


def adapter_config(section: dict, grid: tuple[int, int] | None = None) -> AdapterConfig:
    """``{method, towers: both|vision|text, modules: [q, k, v, o, mlp], **hyper}`` -> config.

    ``grid``: the image tower's patch grid (``vision_grid``), FoRA's token layout when the
    section does not set one (FoRA needs a spatial grid: the image tower only).

    The CLIP-LoRA default: lora, r=2, alpha=1, dropout=0.25 on q, k, v of both towers.
    ``sltrain_full`` (a replacement, not an adapter) gives an ``SLTrainWeightsConfig`` of the
    towers' MLP Linears (``modules: [mlp]``).
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
    if method == "fora":
        if "text" in names:
            raise ValueError(
                "adapter.method fora filters a spatial token grid and CLIP's text tower has "
                "none: set adapter.towers=vision"
            )
        if section.get("grid") is None and grid is not None:
            section["grid"] = tuple(grid)  # prefix_tokens: 1 (the class token) when it fits
    slices = tuple(s for s in ("q", "k", "v", "o") if s in modules)
    targets = []
    for tower in names:
        attn, mlp = TOWERS[tower]
        targets += [attn] if slices else []
        targets += [mlp] if "mlp" in modules else []
    if is_replacement(method):  # sltrain_full: the MLP Linears of the towers are replaced
        hyper = replacement_hyper(method, section, DEFAULTS["adapter"])
        return replacement_config(method, hyper, tuple(targets))
    return make_config(method, targets=tuple(targets), slices=slices or ("q", "k", "v"), **section)


def vision_grid(name: str) -> tuple[int, int] | None:
    """The patch grid ``(H, W)`` of open_clip model ``name``'s image tower (None when
    ``name`` is not a ViT config open_clip knows)."""
    import open_clip

    from .backbone import register_tiny_configs

    register_tiny_configs()
    vision = (open_clip.get_model_config(name) or {}).get("vision_cfg", {})
    size, patch = vision.get("image_size"), vision.get("patch_size")
    if not size or not patch:
        return None
    (h, w), (ph, pw) = (v if isinstance(v, (list, tuple)) else (v, v) for v in (size, patch))
    return h // ph, w // pw


class FewShotModule(AdapterModule):
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
        schedule = Schedule(total_steps, optim.warmup_steps, optim.schedule)
        super().__init__(model, optim.lr, optim.weight_decay, tuple(optim.betas), schedule=schedule)
        self.batches, self.optim = batches, optim
        self.total_steps, self.seed = total_steps, seed

    def train_dataloader(self) -> StepBatches:
        # called after a checkpoint is restored: continue the stream at the resumed step
        self.batches.start_step = self.trainer.global_step * self.trainer.accumulate_grad_batches
        return self.batches

    def batch_size(self, batch) -> int:
        return len(batch[1])

    def task_loss(self, batch, batch_idx):
        images, labels = batch
        logits = self.model(images)
        loss = F.cross_entropy(logits.float(), labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        self.log("train_acc", acc, prog_bar=True, batch_size=len(labels))
        return loss


__all__ = ["MODULES", "TOWERS", "FewShotModule", "OptimConfig", "adapter_config", "lr_factor"]
