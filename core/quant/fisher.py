"""``fisher_diagonal``: a diagonal Fisher estimate of Linear weights from a few batches.

    fisher = fisher_diagonal(model, batches, lambda m, b: m(b[0]).logsumexp(-1).mean())
    quantize(model, bits=3, adapter=make_config("lq_lora", fisher=True, ...), fisher=fisher)

``F[name] = mean over batches of (dL/dW)^2`` for every ``nn.Linear`` weight ``targets`` names
(empty: every Linear): the empirical Fisher's diagonal, what LQ-LoRA weights its
decomposition by (batches of one example give the per-example estimate the paper uses).
The model's ``requires_grad`` flags and training mode are restored afterwards; nothing
else changes (gradients are read with ``torch.autograd.grad``, no ``.grad`` is written).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn


def fisher_diagonal(model: nn.Module, batches: Iterable, loss_fn: Callable[[nn.Module, object],
                    Tensor], targets=()) -> dict[str, Tensor]:
    """``{layer name: mean squared gradient of its weight}`` over ``batches``."""
    from .model import quant_targets

    layers = quant_targets(model, targets)
    weights = [lin.weight for _, lin in layers]
    flags = [w.requires_grad for w in weights]
    training = model.training
    sums = [torch.zeros_like(w, dtype=torch.float32) for w in weights]
    n = 0
    try:
        model.eval()
        for w in weights:
            w.requires_grad_(True)
        for batch in batches:
            grads = torch.autograd.grad(loss_fn(model, batch), weights, allow_unused=True)
            for s, g in zip(sums, grads, strict=True):
                if g is not None:
                    s += g.detach().float() ** 2
            n += 1
    finally:
        for w, flag in zip(weights, flags, strict=True):
            w.requires_grad_(flag)
        model.train(training)
    if n == 0:
        raise ValueError("fisher_diagonal: no batches were given")
    return {name: s / n for (name, _), s in zip(layers, sums, strict=True)}
