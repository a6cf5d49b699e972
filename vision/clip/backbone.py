"""The CLIP architecture: open_clip model configs (tiny ones registered as data) and the
model + tokenizer + preprocessing values of one backbone (``create``). Where the weights come
from (hub tags, local files, the offline stand-in) is ``build.py``'s job.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .config import BackboneConfig

# Architectures as data (open_clip model-config JSON), registered by an explicit call.
TINY_CONFIGS: dict[str, dict] = {
    "lorakit-tiny-vit": {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 64,
            "head_width": 32,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    },
    "lorakit-tiny-vit-64": {
        "embed_dim": 64,
        "vision_cfg": {
            "image_size": 64,
            "layers": 4,
            "width": 128,
            "head_width": 32,
            "patch_size": 8,
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 128,
            "heads": 4,
            "layers": 4,
        },
    },
}
_registered: Path | None = None
_REGISTER_LOCK = threading.Lock()


@dataclass
class Backbone:
    """A loaded CLIP: the open_clip model, its tokenizer and image preprocessing values."""

    model: nn.Module
    tokenizer: object
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def register_tiny_configs() -> Path:
    """Write ``TINY_CONFIGS`` as JSON files and add them to open_clip's registry (once).
    open_clip reads the files when they are added, so the folder is removed at once (no
    folder is left behind in TMPDIR); the returned path no longer exists."""
    global _registered
    import open_clip

    with _REGISTER_LOCK:  # one thread at a time: open_clip rescans every folder it was given
        if _registered is not None and all(n in open_clip.list_models() for n in TINY_CONFIGS):
            return _registered
        folder = Path(tempfile.mkdtemp(prefix="lorakit-clip-configs-"))
        try:
            for name, cfg in TINY_CONFIGS.items():
                (folder / f"{name}.json").write_text(json.dumps(cfg, indent=2))
            open_clip.add_model_config(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        _registered = folder
        return folder


def check_name(name: str) -> None:
    """Refuse an architecture open_clip does not know (after registering the tiny ones)."""
    import open_clip

    register_tiny_configs()
    if open_clip.get_model_config(name) is None:
        raise ValueError(
            f"backbone.name: unknown open_clip model {name!r}; e.g. ViT-B-16, ViT-B-32, "
            f"or a tiny config: {', '.join(TINY_CONFIGS)}"
        )


class _NoRandomInitWarning(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded" line when no weights were asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def create(
    cfg: BackboneConfig,
    pretrained: str | None,
    device: str | torch.device = "cpu",
    state: dict | None = None,
) -> Backbone:
    """The open_clip model ``cfg.name`` with ``pretrained`` (a tag, a file, or None: random),
    then ``state`` loaded when given; eval mode."""
    import open_clip

    check_name(cfg.name)
    quiet = _NoRandomInitWarning() if pretrained is None else None  # random init was asked for
    if quiet:
        logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(
            cfg.name,
            pretrained=pretrained,
            precision=cfg.precision,
            device=device,
            cache_dir=cfg.cache_dir,
        )
    except RuntimeError as e:
        raise ValueError(
            f"could not load backbone {cfg.name} (pretrained={pretrained}): {e}"
        ) from None
    finally:
        if quiet:
            logging.getLogger().removeFilter(quiet)
    if state is not None:
        model.load_state_dict(state)
        model.to(device)
    model.eval()
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    mean = tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(pp.get("std", open_clip.OPENAI_DATASET_STD))
    return Backbone(model, open_clip.get_tokenizer(cfg.name), int(size), mean, std)
