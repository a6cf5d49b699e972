"""Second stage: distil SAM's pseudo-labels into a small fast segmentation network.

FCL-COD's detector is SAM with prompts; for deployment a prompt-free network trained on
its pseudo-labels is cheaper. Here the (adapted) SAM, prompted with each training image's
weak label, labels the training set (``selftrain.pseudo_labels``: confident pixels only,
box and scribble constraints applied); a torchvision segmentation network is trained on
those maps with the balanced partial BCE, from random initialisation (no weights can be
downloaded here; with ImageNet weights on disk, pass them in ``checkpoint``). It sees only
the image at test time and is scored with the same COD metrics.

    student = train_student(pseudo, folder, DistillConfig(arch="lraspp_mobilenet_v3_small"))
    scores = evaluate_student(student, test_folder)

Architectures (``arch``): ``lraspp_mobilenet_v3_large`` (torchvision's LR-ASPP),
``lraspp_mobilenet_v3_small`` (the same head on MobileNetV3-Small), ``fcn_resnet18``
(torchvision's FCN head on ResNet-18 up to ``layer3``, stride 16).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from lorakit.data.cod import CODFolder
from lorakit.data.runs import write_json

from .config import DistillConfig
from .evaluate import SODScores
from .losses import partial_bce

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _lraspp(backbone: nn.Module) -> nn.Module:
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.lraspp import LRASPP

    feats = backbone.features
    stages = [0] + [i for i, b in enumerate(feats) if getattr(b, "_is_cn", False)]
    stages.append(len(feats) - 1)
    low, high = stages[-4], stages[-1]  # stride 8 and stride 16 (dilated), as torchvision
    getter = IntermediateLayerGetter(feats, {str(low): "low", str(high): "high"})
    return LRASPP(getter, feats[low].out_channels, feats[high].out_channels, 1)


def _fcn_resnet18() -> nn.Module:
    from torchvision.models import resnet18
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.fcn import FCN, FCNHead

    return FCN(IntermediateLayerGetter(resnet18(weights=None), {"layer3": "out"}), FCNHead(256, 1))


def _mobilenet(name: str):
    import torchvision.models as tvm

    return lambda: _lraspp(getattr(tvm, name)(weights=None, dilated=True))


ARCHS = {
    "lraspp_mobilenet_v3_large": _mobilenet("mobilenet_v3_large"),
    "lraspp_mobilenet_v3_small": _mobilenet("mobilenet_v3_small"),
    "fcn_resnet18": _fcn_resnet18,
}


class FastSegmenter(nn.Module):
    """forward(images (B, 3, S, S) float 0-255) -> logits (B, 1, S, S). Everything trains."""

    def __init__(self, arch: str):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown student arch {arch!r}; choose from {', '.join(ARCHS)}")
        self.arch, self.net = arch, ARCHS[arch]()
        self.register_buffer("mean", 255 * torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", 255 * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(self, images: Tensor) -> Tensor:
        return self.net((images - self.mean) / self.std)["out"]


def _resized(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    return cv2.resize(
        image, (size, size), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    )


def _tensors(folder: CODFolder, pseudo: dict, size: int) -> tuple[Tensor, Tensor]:
    """(N, 3, S, S) float 0-255 images and (N, S, S) long {0, 1, 2} pseudo-labels."""
    xs, ys = [], []
    for i in range(len(folder)):
        sample = folder[i]
        xs.append(torch.from_numpy(_resized(sample.image, size)).permute(2, 0, 1).float())
        ys.append(torch.from_numpy(_resized(pseudo[sample.name], size, nearest=True)).long())
    return torch.stack(xs), torch.stack(ys)


def train_student(
    pseudo: dict[str, np.ndarray], folder: CODFolder, cfg: DistillConfig
) -> FastSegmenter:
    """Train a fresh ``cfg.arch`` on ``pseudo`` (name -> (H, W) {0, 1, 2}) for ``cfg.steps``."""
    cfg.validate()
    missing = [n for n in folder.names if n not in pseudo]
    if missing:
        raise ValueError(f"distill: no pseudo-label for training image {missing[0]}")
    images, labels = _tensors(folder, pseudo, cfg.size)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        net = FastSegmenter(cfg.arch)
        if cfg.checkpoint:
            _load_backbone(net, Path(cfg.checkpoint))
        net.train()
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
        gen = torch.Generator().manual_seed(cfg.seed)
        bs = min(cfg.batch_size, len(images))
        for _ in range(cfg.steps):
            idx = torch.randperm(len(images), generator=gen)[:bs]
            x, y = images[idx], labels[idx]
            if torch.rand((), generator=gen) < 0.5:  # flips keep the labels aligned
                x, y = x.flip(-1), y.flip(-1)
            if torch.rand((), generator=gen) < 0.5:
                x, y = x.flip(-2), y.flip(-2)
            loss = partial_bce(net(x), y, balanced=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
    return net.eval()


def _load_backbone(net: FastSegmenter, path: Path) -> None:
    if not path.is_file():
        raise ValueError(f"distill.checkpoint {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, _ = net.net.backbone.load_state_dict(state, strict=False)
    if len(missing) == len(net.net.backbone.state_dict()):
        raise ValueError(
            f"distill.checkpoint {path} fits none of the {net.arch} backbone's weights"
        )


@torch.no_grad()
def evaluate_student(net: FastSegmenter, folder: CODFolder, size: int, batch: int = 16) -> dict:
    """COD metrics of the prompt-free student on a folder with ``GT/``."""
    net.eval()
    scores = SODScores()
    for start in range(0, len(folder), batch):
        samples = [folder[i] for i in range(start, min(start + batch, len(folder)))]
        x = torch.stack(
            [torch.from_numpy(_resized(s.image, size)).permute(2, 0, 1).float() for s in samples]
        )
        probs = net(x)[:, 0].sigmoid().numpy()
        for s, p in zip(samples, probs, strict=True):
            if s.gt is None:
                raise ValueError(
                    f"ground truth {folder.root / 'GT' / (s.name + '.png')} is missing"
                )
            h, w = s.image.shape[:2]
            scores.add(cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR), s.gt)
    return scores.results()


def save_student(net: FastSegmenter, cfg: DistillConfig, directory: Path) -> Path:
    """``student.safetensors`` (written atomically) and ``student.json`` (its config)."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".student.{os.getpid()}.tmp"
    save_file({k: v.contiguous() for k, v in net.net.state_dict().items()}, str(tmp))
    os.replace(tmp, directory / "student.safetensors")
    write_json(directory / "student.json", asdict(cfg))
    return directory


def load_student(directory: Path) -> tuple[FastSegmenter, int]:
    """(student, its input size) from a ``save_student`` folder."""
    meta = directory / "student.json"
    if not meta.is_file():
        raise ValueError(f"{directory} holds no distilled student ({meta} is missing)")
    cfg = DistillConfig(**json.loads(meta.read_text()))
    net = FastSegmenter(cfg.arch)
    net.net.load_state_dict(load_file(str(directory / "student.safetensors")))
    return net.eval(), cfg.size
