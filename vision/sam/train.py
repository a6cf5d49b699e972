"""The weakly supervised training step (Lightning): partial BCE, gradient-aware
contrastive loss, EMA teacher-student consistency, and under box supervision the box
projection loss, each with an on/off switch.

What trains: only ``trainable_parameters(self.model)`` (the adapters and the fusion
head), with AdamW at a constant lr (the runtime's ``AdapterModule``). The EMA teacher is a
frozen copy of the model whose trainable tensors follow the student after every optimizer
step (not every micro-batch); checkpoints hold those tensors of it, not its frozen SAM.
"""

from __future__ import annotations

import copy

import torch

from lorakit.data.runtime import AdapterModule

from .config import LossConfig, OptimConfig
from .dataset import prompt_of
from .losses import (
    box_projection,
    consistency,
    ema_update,
    gradient_aware_contrastive,
    partial_bce,
)
from .model import SamCOD


def supervised_loss(model: SamCOD, batch: dict, losses: LossConfig, prompt_mode: str,
                    box_labels: bool = False) -> torch.Tensor:
    """The label terms of ``CODModule.task_loss`` (partial BCE on the strong view, and the
    box projection under box supervision) for ``model`` alone: what LQ-LoRA's Fisher is
    estimated from before training (the contrastive and consistency terms compare features
    or an EMA teacher that do not exist yet)."""
    prompts = [prompt_of(p, b, prompt_mode)
               for p, b in zip(batch["points"], batch["box"], strict=True)]
    logits, _ = model(batch["strong"], prompts)
    loss = partial_bce(logits, batch["labels"], losses.balanced)
    if box_labels and losses.box_projection > 0:
        loss = loss + losses.box_projection * box_projection(logits, batch["box"])
    return loss


class CODModule(AdapterModule):
    """Student ``self.model`` on the strong view; EMA ``self.teacher`` on the weak view.

    ``box_labels``: the batch's boxes are labels too (box supervision): the box projection
    loss joins the partial BCE (which then sees the background outside each box).
    Checkpoints hold the teacher's copies of the student's trainable tensors only
    (``mirrors``): its frozen SAM is the student's, rebuilt from the config.
    """

    mirrors = {"teacher": "model"}

    def __init__(
        self,
        model: SamCOD,
        losses: LossConfig,
        optim: OptimConfig,
        prompt_mode: str,
        box_labels: bool = False,
    ):
        super().__init__(model, optim.lr, optim.weight_decay)
        losses.validate()
        self.losses, self.optim, self.prompt_mode = losses, optim, prompt_mode
        self.box_labels = box_labels
        self.teacher = None
        if losses.consistency > 0:
            self.teacher = copy.deepcopy(model).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)

    def _prompts(self, batch: dict) -> list:
        return [
            prompt_of(p, b, self.prompt_mode)
            for p, b in zip(batch["points"], batch["box"], strict=True)
        ]

    def batch_size(self, batch: dict) -> int:
        return len(batch["points"])

    def task_loss(self, batch: dict, batch_idx: int) -> torch.Tensor:
        prompts = self._prompts(batch)
        logits, feats = self.model(batch["strong"], prompts)
        cfg, terms = self.losses, {}
        if cfg.pbce:
            terms["pbce"] = partial_bce(logits, batch["labels"], cfg.balanced)
        if cfg.contrastive > 0:
            gac = gradient_aware_contrastive(
                feats, batch["labels"], batch["weak"], cfg.tau, cfg.grad_beta
            )
            terms["contrastive"] = cfg.contrastive * gac
        if self.box_labels and cfg.box_projection > 0:
            terms["box_projection"] = cfg.box_projection * box_projection(logits, batch["box"])
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits, _ = self.teacher(batch["weak"], prompts)
            terms["consistency"] = cfg.consistency * consistency(logits, teacher_logits)
        for name, value in terms.items():
            self.log(f"train_{name}", value.detach(), batch_size=len(prompts))
        return sum(terms.values())

    def on_train_epoch_start(self) -> None:
        if self.teacher is not None:
            self.teacher.eval()  # Lightning's train() reaches the teacher too

    def after_optimizer_step(self) -> None:
        """Called by the runtime's ``AdapterHooks`` once per optimizer step, before the
        checkpoint callback: the teacher in a checkpoint is the one the next step uses."""
        if self.teacher is not None:
            ema_update(self.teacher, self.model, self.losses.ema_decay)
