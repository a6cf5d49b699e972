"""Backbones for the robustness pipeline: ``Classifier = head(features(normalise(x)))``.

Kinds (``backbone.kind``):

    tiny_vit     torchvision ``VisionTransformer`` at a tiny size (tests, demos); random
                 init, or a lorakit checkpoint written by ``pretrain.pretrain_tiny``
    torchvision  a torchvision classifier (``arch``: resnet18/34/50, vit_b_16, ...) from a
                 local state_dict file (``checkpoint``); its own head is replaced
    open_clip    an open_clip image tower with a zero-shot head from the class names
                 (``model`` + ``pretrained``/``checkpoint``, or a tiny config such as
                 ``lorakit-tiny-vit``), loaded through ``lorakit.vision.clip.build``

A missing file fails at once with a ``ValueError`` naming it. Images enter the classifier
as float (N, 3, H, W) in [0, 1]; normalisation is part of the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import KINDS, TINY_IMAGE_SIZE, BackboneConfig  # noqa: F401  (old names)
from .tiny import tiny_vit

CNN_IMAGE_SIZE = 224  # torchvision CNNs take any size; 224 is what their weights were trained at
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

# default adapter targets per backbone family (regex, full match on Classifier names)
VIT_TARGETS = (
    r"features\.encoder\.layers\.encoder_layer_\d+\.self_attention",
    r"features\.encoder\.layers\.encoder_layer_\d+\.mlp\.(0|3)",
)
RESNET_TARGETS = (r"features\.layer\d\.\d+\.conv[12]",)
CLIP_TARGETS = (
    r"features\.transformer\.resblocks\.\d+\.attn",
    r"features\.transformer\.resblocks\.\d+\.mlp\.(c_fc|c_proj)",
)


class Classifier(nn.Module):
    """``logits = head(f)``, ``f = features(normalise(x))`` (L2-normalised when ``unit``).

    x: (N, 3, H, W) float in [0, 1] -> logits (N, K). ``features`` maps to (N, D).
    """

    def __init__(
        self, features: nn.Module, head: nn.Linear, mean=HALF, std=HALF, unit: bool = False
    ):
        super().__init__()
        self.features, self.head, self.unit = features, head, unit
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def embed(self, x: Tensor) -> Tensor:
        f = self.features((x - self.mean) / self.std)
        return nn.functional.normalize(f, dim=-1) if self.unit else f

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


@dataclass
class Built:
    model: Classifier
    targets: tuple[str, ...]
    image_size: int
    head_source: str  # where the head came from: keep, zeroshot, or pending (prototype/zero)


def _split_head(net: nn.Module, arch: str) -> tuple[nn.Module, nn.Linear]:
    """Take the last Linear of a torchvision classifier off; returns (features, head)."""
    if hasattr(net, "fc") and isinstance(net.fc, nn.Linear):
        head, net.fc = net.fc, nn.Identity()
    elif hasattr(net, "heads"):
        head, net.heads = net.heads[-1], nn.Identity()
    elif hasattr(net, "classifier") and isinstance(net.classifier[-1], nn.Linear):
        head, net.classifier[-1] = net.classifier[-1], nn.Identity()
    else:
        raise ValueError(
            f"backbone.arch {arch!r}: cannot find its classification head (fc, heads, classifier)"
        )
    return net, head


def _require_file(path: str | None, field_name: str, hint: str) -> Path:
    if not path:
        raise ValueError(f"{field_name} is required: {hint}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"{field_name}: file {p} does not exist; {hint}")
    return p


def _load_state(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one clear message
        raise ValueError(f"backbone.checkpoint: cannot read {path}: {e}") from None


def _new_head(head: nn.Linear, classes: list[str]) -> tuple[nn.Linear, str]:
    if head.out_features == len(classes):
        return head, "keep"
    return nn.Linear(head.in_features, len(classes)), "pending"


def build_tiny(cfg: BackboneConfig, classes: list[str]) -> Built:
    """Tiny torchvision ViT, random or from a lorakit checkpoint (pretraining on demand)."""
    net = tiny_vit(cfg, len(classes))
    source = "pending"
    if cfg.checkpoint:
        path = Path(cfg.checkpoint).expanduser()
        if not path.is_file() and cfg.pretrain_if_missing:
            from .pretrain import pretrain_tiny

            pretrain_tiny(path, cfg, classes)
        path = _require_file(
            cfg.checkpoint,
            "backbone.checkpoint",
            "write one with lorakit.vision.ood.pretrain.pretrain_tiny or set "
            "backbone.pretrain_if_missing=true",
        )
        ckpt = _load_state(path)
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise ValueError(
                f"backbone.checkpoint: {path} is not a lorakit tiny_vit checkpoint (no state_dict)"
            )
        try:
            if ckpt.get("classes") != list(classes):
                ckpt["state_dict"] = {
                    k: v for k, v in ckpt["state_dict"].items() if not k.startswith("heads.")
                }
                net.load_state_dict(ckpt["state_dict"], strict=False)
            else:
                net.load_state_dict(ckpt["state_dict"])
                source = "keep"
        except RuntimeError as e:
            raise ValueError(
                f"backbone.checkpoint {path} does not fit the tiny_vit config "
                f"(width/depth/patch/image_size): {e}"
            ) from None
    features, head = _split_head(net, "tiny_vit")
    return Built(Classifier(features, head), VIT_TARGETS, cfg.image_size, source)


def build_torchvision(cfg: BackboneConfig, classes: list[str]) -> Built:
    import torchvision

    if cfg.arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"backbone.arch: unknown torchvision classifier {cfg.arch!r}")
    path = _require_file(
        cfg.checkpoint,
        "backbone.checkpoint",
        f"download the {cfg.arch} weights (torchvision's .pth) on a connected machine "
        "and set backbone.checkpoint=/path/to/file.pth",
    )
    net = torchvision.models.get_model(cfg.arch, weights=None)
    state = _load_state(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(
            f"backbone.checkpoint {path} does not fit torchvision {cfg.arch}: {e}"
        ) from None
    features, head = _split_head(net, cfg.arch)
    head, source = _new_head(head, classes)
    targets = VIT_TARGETS if cfg.arch.startswith("vit") else RESNET_TARGETS
    size = arch_image_size(cfg, cfg.arch, getattr(net, "image_size", None))
    return Built(Classifier(features, head, IMAGENET_MEAN, IMAGENET_STD), targets, size, source)


def arch_image_size(cfg: BackboneConfig, name: str, fixed: int | None) -> int:
    """The input size: the architecture's own (``fixed``, e.g. 224 for ``vit_b_16``), or
    ``backbone.image_size`` (default 224) where the architecture takes any size (CNNs).
    A ``backbone.image_size`` that contradicts ``fixed`` is one clear ValueError."""
    if fixed is None:
        return int(cfg.image_size or CNN_IMAGE_SIZE)
    if cfg.image_size is not None and int(cfg.image_size) != int(fixed):
        raise ValueError(
            f"backbone.image_size {cfg.image_size} conflicts with {name}, which takes "
            f"{fixed} px images; drop backbone.image_size (the architecture sets it)"
        )
    return int(fixed)


@torch.no_grad()
def build_open_clip(cfg: BackboneConfig, classes: list[str]) -> Built:
    """open_clip image tower + zero-shot head: mean template text embedding per class,
    scaled by the model's logit scale; features are L2-normalised image embeddings."""
    from lorakit.vision.clip.build import BackboneConfig as ClipConfig
    from lorakit.vision.clip.build import load_backbone

    bb = load_backbone(
        ClipConfig(name=cfg.model, pretrained=cfg.pretrained, checkpoint=cfg.checkpoint)
    )
    clip = bb.model
    prompts = [t.format(c.replace("_", " ")) for c in classes for t in cfg.templates]
    text = clip.encode_text(bb.tokenizer(prompts)).float()
    text = nn.functional.normalize(text, dim=-1).view(len(classes), len(cfg.templates), -1).mean(1)
    text = nn.functional.normalize(text, dim=-1)
    head = nn.Linear(text.shape[1], len(classes), bias=False)
    head.weight.copy_(text * clip.logit_scale.exp().float())
    visual = clip.visual
    return Built(
        Classifier(visual, head, bb.mean, bb.std, unit=True),
        CLIP_TARGETS,
        arch_image_size(cfg, cfg.model, bb.image_size),
        "zeroshot",
    )


def build_backbone(cfg: BackboneConfig, classes: list[str]) -> Built:
    """The classifier for ``classes`` (all weights trainable; the methods freeze what they keep)."""
    cfg.validate()
    if not classes:
        raise ValueError("build_backbone: the class list is empty")
    builder = {
        "tiny_vit": build_tiny,
        "torchvision": build_torchvision,
        "open_clip": build_open_clip,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        built = builder[cfg.kind](cfg, classes)
    if cfg.head_init == "keep" and built.head_source != "keep":
        raise ValueError(
            "backbone.head_init=keep: the checkpoint's head does not cover these classes"
        )
    if cfg.head_init in ("prototype", "zero") or (
        cfg.head_init == "zeroshot" and built.head_source != "zeroshot"
    ):
        if cfg.head_init == "zeroshot":
            raise ValueError("backbone.head_init=zeroshot needs backbone.kind=open_clip")
        built.head_source = "pending"
    built.model.eval()
    return built


@torch.no_grad()
def init_head(model: Classifier, mode: str, loader) -> None:
    """Initialise a fresh head: ``prototype`` (class means of the ID training features,
    L2-normalised, times 10) or ``zero``. ``loader`` yields (x, y) batches."""
    head = model.head
    if mode == "zero":
        head.weight.zero_()
        if head.bias is not None:
            head.bias.zero_()
        return
    k, d = head.weight.shape
    sums, counts = torch.zeros(k, d), torch.zeros(k)
    was = model.training
    model.eval()
    for x, y in loader:
        f = nn.functional.normalize(model.embed(x).float(), dim=-1)
        sums.index_add_(0, y, f)
        counts += torch.bincount(y, minlength=k).float()
    model.train(was)
    if (counts == 0).any():
        raise ValueError(
            f"prototype head: no training images for class index(es) {torch.nonzero(counts == 0).flatten().tolist()}"
        )
    protos = nn.functional.normalize(sums / counts[:, None], dim=-1)
    head.weight.copy_(protos * 10.0)
    if head.bias is not None:
        head.bias.zero_()
