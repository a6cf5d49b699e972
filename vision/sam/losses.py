"""The FCL-COD training losses for weak labels (METHODS.md, FoRA recipe).

Label maps follow the S-COD convention: 1 = foreground, 2 = background, 0 = unknown.

- ``partial_bce``: binary cross-entropy on labelled pixels only.
- ``gradient_aware_contrastive`` (**reading**): pixel embeddings are pulled to the
  foreground / background prototype of their own image (cosine similarity, temperature
  ``tau``); each pixel is weighted by ``1 + beta * |grad I| / max |grad I|`` (Sobel on the
  grey image), so pixels on image edges, where camouflage boundaries hide, count more.
- ``consistency``: mean squared difference between the student's and the (EMA)
  teacher's foreground probabilities, the teacher on a weak view, the student on a strong
  one; it damps isolated and extreme responses the sparse labels do not constrain.
- ``box_projection`` (box supervision, after BoxInst): the foreground probability's
  maximum along each column and each row must match the box's own projections (dice), so
  the object fills its box from edge to edge without any pixel inside being labelled.
- ``ema_update``: teacher <- decay * teacher + (1 - decay) * student (trainable tensors).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def partial_bce(logits: Tensor, labels: Tensor, balanced: bool = False) -> Tensor:
    """logits (B, 1, H, W), labels (B, H, W) in {0, 1, 2} -> mean BCE over labelled pixels.

    ``balanced``: the mean of the foreground-pixel and background-pixel means, so a
    scribble's many background pixels do not outweigh its few foreground ones.
    """
    logits = logits[:, 0]
    known = labels > 0
    if not known.any():
        return logits.sum() * 0.0
    target = (labels == 1).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if not balanced:
        return loss[known].mean()
    parts = [loss[labels == v].mean() for v in (1, 2) if (labels == v).any()]
    return torch.stack(parts).mean()


def gradient_magnitude(images: Tensor) -> Tensor:
    """(B, 3, H, W) -> Sobel gradient magnitude of the grey image, (B, H, W), each image / its max."""
    grey = images.float().mean(1, keepdim=True)
    kx = SOBEL_X.to(images.device)[None, None]
    gx = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kx)
    gy = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kx.transpose(-1, -2))
    mag = (gx**2 + gy**2).sqrt()[:, 0]
    return mag / mag.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)


def gradient_aware_contrastive(
    features: Tensor, labels: Tensor, images: Tensor, tau: float = 0.1, beta: float = 4.0
) -> Tensor:
    """features (B, C, h, w), labels (B, H, W), images (B, 3, H, W) -> scalar.

    Features are resized to ``H x W``. Images without both a foreground and a background
    label are skipped; with none left the loss is 0.
    """
    feats = F.interpolate(features, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    feats = F.normalize(feats, dim=1)
    weight = 1 + beta * gradient_magnitude(images)
    terms = []
    for f, lab, w in zip(feats, labels, weight, strict=True):
        fg, bg = lab == 1, lab == 2
        if not (fg.any() and bg.any()):
            continue
        f = f.flatten(1).T  # (H*W, C)
        fg, bg, w = fg.flatten(), bg.flatten(), w.flatten()
        protos = torch.stack([(f[m] * w[m, None]).sum(0) / w[m].sum() for m in (fg, bg)])
        protos = F.normalize(protos, dim=1)
        known = fg | bg
        sims = f[known] @ protos.T / tau  # (K, 2)
        target = bg[known].long()  # 0 = foreground prototype, 1 = background
        ce = F.cross_entropy(sims, target, reduction="none")
        terms.append((ce * w[known]).sum() / w[known].sum())
    if not terms:
        return features.sum() * 0.0
    return torch.stack(terms).mean()


def consistency(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Mean squared difference of sigmoid probabilities; the teacher gets no gradient."""
    return F.mse_loss(student_logits.sigmoid(), teacher_logits.detach().sigmoid())


def _dice(p: Tensor, t: Tensor) -> Tensor:
    return 1 - (2 * (p * t).sum(-1) + 1e-4) / (p.pow(2).sum(-1) + t.pow(2).sum(-1) + 1e-4)


def box_projection(logits: Tensor, boxes: Tensor) -> Tensor:
    """logits (B, 1, H, W), boxes (B, 4) [x0, y0, x1, y1] in the same pixels -> scalar.

    Dice between ``max_y p`` (B, W) and the box's x-extent, plus dice between ``max_x p``
    (B, H) and its y-extent, averaged over the batch.
    """
    prob = logits[:, 0].float().sigmoid()
    h, w = prob.shape[-2:]
    xs = torch.arange(w, device=prob.device, dtype=prob.dtype)
    ys = torch.arange(h, device=prob.device, dtype=prob.dtype)
    b = boxes.to(prob.device, prob.dtype)
    tx = ((xs >= b[:, :1] - 0.5) & (xs <= b[:, 2:3] + 0.5)).to(prob.dtype)  # (B, W)
    ty = ((ys >= b[:, 1:2] - 0.5) & (ys <= b[:, 3:4] + 0.5)).to(prob.dtype)  # (B, H)
    return (_dice(prob.amax(1), tx) + _dice(prob.amax(2), ty)).mean()


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """Move the teacher's copies of the student's trainable tensors toward the student.
    A tensor whose shape changed (a rank-changing method resized it) is copied over: the
    teacher cannot average tensors of different ranks."""
    params = dict(teacher.named_parameters())
    for name, p in student.named_parameters():
        if p.requires_grad:
            if params[name].shape != p.shape:
                params[name].data = p.detach().clone()
                continue
            params[name].mul_(decay).add_(p.detach(), alpha=1 - decay)
