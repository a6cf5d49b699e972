"""A small "foundation" backbone for offline demos and benchmarks: the tiny ViT trained on
a broad mixture of generated styles (every style of ``lorakit.data.shift``, the ID
``photo`` style under-represented), like a web-scale model that has seen sketches and
paintings. Fine-tuning it on ID ``photo`` images then shows the robustness trade-off.

    pretrain_tiny(Path(".cache/ood/backbone.pt"), BackboneConfig(), ["circle", "square"])

Plain torch loop (a data generator, not a pipeline run); the checkpoint is written
atomically as ``{"arch", "config", "classes", "state_dict"}``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lorakit.data.shift import ID_STYLE, STYLES, render

from .tiny import tiny_vit

if TYPE_CHECKING:  # build.py calls pretrain_tiny on demand
    from .build import BackboneConfig

log = logging.getLogger(__name__)
PER_CLASS = 60  # images per class and style (the ID style gets a third of that)
SEED_OFFSET = 10_000  # pretraining images never coincide with the task's images
BATCH = 64


def pretrain_data(
    classes: list[str], size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, size, size) float in [0, 1] and (N,) labels over every style."""
    xs, ys = [], []
    for j, style in enumerate(STYLES):
        n = PER_CLASS // 3 if style == ID_STYLE else PER_CLASS
        strength = 1.0 if style == ID_STYLE else 0.8
        img, y = render(classes, n, style, size, seed + SEED_OFFSET + j, strength)
        xs.append(img)
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs)).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.from_numpy(np.concatenate(ys))


def pretrain_tiny(path: str | Path, cfg: BackboneConfig, classes: list[str], seed: int = 0) -> Path:
    """Train the tiny ViT of ``cfg`` for ``cfg.pretrain_steps`` steps; save it at ``path``."""
    path = Path(path)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = tiny_vit(cfg, len(classes))
    x, y = pretrain_data(list(classes), cfg.image_size, seed)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.05)
    steps = int(cfg.pretrain_steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=2e-3, total_steps=max(steps, 1), pct_start=0.1
    )
    net.train()
    log.info(
        "pretraining tiny_vit on %d generated images (%d styles), %d steps",
        len(x),
        len(STYLES),
        steps,
    )
    bar = tqdm(range(steps), desc="pretrain tiny_vit", unit="step", mininterval=2.0)
    for step in bar:
        idx = torch.randint(0, len(x), (BATCH,), generator=g)
        xb = x[idx]
        flip = torch.rand(len(idx), generator=g) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        loss = F.cross_entropy(net((xb - 0.5) / 0.5), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(
        {
            "arch": "tiny_vit",
            "config": asdict(cfg),
            "classes": list(classes),
            "state_dict": net.state_dict(),
        },
        tmp,
    )
    os.replace(tmp, path)
    return path
