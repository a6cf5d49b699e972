"""A stand-in for SAM's own pretraining, for the tiny offline backbone.

Real SAM learnt to segment clearly visible objects from point and box prompts (SA-1B)
and is weak on camouflage. A randomly initialised tiny SAM has learnt nothing, so its
"zero-shot" score would say nothing. ``ensure_pretrained`` therefore trains every weight
of the tiny SAM on generated scenes with *obvious* objects (difficulty 0, full masks,
random point / box prompts) and caches the result as an ordinary checkpoint file, which
``build_sam`` then loads with ``torch.load(weights_only=True)`` like a vit_b file.
Weak-label adaptation (FoRA/LoRA) then starts from this model, as it would from SAM.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lorakit.data.camouflage import CamouflageSpec, ensure_cod
from lorakit.data.cod import CODFolder

from .dataset import prepare, to_tensor
from .model import AdapterSpec, Prompt, SamCOD
from .prompts import PromptOptions

if TYPE_CHECKING:  # build.py calls this module; it hands over a builder of the random model
    from segment_anything.modeling import Sam

    from .build import BackboneConfig

PRETRAIN_SCENES = 96


def checkpoint_name(cfg: BackboneConfig) -> str:
    return (
        f"tiny-px{cfg.img_size}-e{cfg.embed_dim}-d{cfg.depth}-h{cfg.heads}-w{cfg.window}-c{cfg.dim}"
        f"-seed{cfg.seed}-steps{cfg.pretrain_steps}"
        + ("" if cfg.pretrain_cue == "colour" else f"-{cfg.pretrain_cue}")
        + ".pth"
    )


def _batch(folder: CODFolder, size: int, rng: np.random.Generator, n: int):
    """n random scenes with full masks and a random prompt each (points, box or both)."""
    images, masks, prompts = [], [], []
    opts = PromptOptions(mode="points", labels="scribble", n_fg=2, n_bg=2)
    for i in rng.choice(len(folder), size=n, replace=False):
        sample = folder[int(i)]
        sample.scribble = np.where(sample.gt, 1, 2).astype(np.uint8)  # full labels
        image, labels, points, box = prepare(sample, opts, size, rng)
        kind = rng.integers(3)
        k = int(rng.integers(1, 3))
        pts = torch.from_numpy(
            np.concatenate([points[:k], points[2 : 2 + int(rng.integers(0, 3))]])
        )
        prompts.append(
            Prompt(
                points=pts if kind != 1 else None, box=torch.from_numpy(box) if kind != 0 else None
            )
        )
        images.append(to_tensor(image))
        masks.append(torch.from_numpy(labels == 1).float())
    return torch.stack(images), torch.stack(masks)[:, None], prompts


def pretrain(
    cfg: BackboneConfig,
    data_root: Path,
    random_sam: Callable[[], Sam],
    batch_size: int = 8,
    lr: float = 2e-3,
) -> dict:
    """Train all weights of a fresh tiny SAM (``random_sam()``, the random starting point)
    for ``cfg.pretrain_steps``; returns its state dict."""
    spec = CamouflageSpec(
        n=PRETRAIN_SCENES,
        size=cfg.img_size,
        difficulty=0.0,
        seed=cfg.seed + 104729,
        cue=cfg.pretrain_cue,
    )
    folder = CODFolder(ensure_cod(data_root, spec), need_gt=True, weak=("box",))
    sam = random_sam()
    model = SamCOD(sam, AdapterSpec(method="none", fusion=False))
    model.train()
    for p in sam.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(sam.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, lr, total_steps=cfg.pretrain_steps, pct_start=0.1
    )
    rng = np.random.default_rng(cfg.seed)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        for _ in tqdm(range(cfg.pretrain_steps), desc="pretrain tiny SAM", leave=False):
            images, masks, prompts = _batch(folder, cfg.img_size, rng, batch_size)
            logits, _ = model(images, prompts)
            prob = logits.sigmoid()
            dice = 1 - (2 * (prob * masks).sum((1, 2, 3)) + 1) / (
                prob.sum((1, 2, 3)) + masks.sum((1, 2, 3)) + 1
            )
            loss = F.binary_cross_entropy_with_logits(logits, masks) + dice.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
            opt.step()
            sched.step()
    decoder = sam.mask_decoder
    decoder.output_upscaling = decoder.output_upscaling.upscaling  # back to SAM's own layout
    return {k: v.detach().clone() for k, v in sam.state_dict().items()}


def ensure_pretrained(cfg: BackboneConfig, random_sam: Callable[[], Sam]) -> Path:
    """The cached checkpoint for ``cfg`` (``cfg.cache``), pretraining ``random_sam()`` first
    if it is missing."""
    cache = Path(cfg.cache or "runs/_cache/cod")
    path = cache / checkpoint_name(cfg)
    if path.is_file():
        return path
    data = cache / f"pretrain-px{cfg.img_size}-{cfg.pretrain_cue}-seed{cfg.seed}"
    state = pretrain(cfg, data, random_sam)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path
