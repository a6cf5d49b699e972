"""Load the CLIP backbone: an open_clip name + pretrained tag, a local checkpoint, or a tiny
registered config (real open_clip ``CLIP`` classes at a small size, for tests and demos).

    bb = load_backbone(BackboneConfig(name="ViT-B-16", pretrained="openai"))
    bb = load_backbone(BackboneConfig(name="ViT-B-16", checkpoint="/models/vit_b16.bin"))
    bb = load_backbone(BackboneConfig(name="lorakit-tiny-vit"))       # the pretrained stand-in
    bb = load_backbone(BackboneConfig(name="lorakit-tiny-vit", pretrained=None))  # random init

A pretrained tag whose weights are not in the local Hugging Face cache, on a machine that
cannot reach the hub, fails at once with a ``ValueError`` that names the file to fetch and
where to put it (no minute-long retries).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

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
HUB_HOST = ("huggingface.co", 443)
_registered: Path | None = None


@dataclass
class BackboneConfig:
    """The ``backbone:`` config section.

    name: open_clip architecture (``ViT-B-16``) or a ``TINY_CONFIGS`` key.
    pretrained: open_clip pretrained tag (``openai``, ``laion2b_s34b_b88k``), None (random),
        or ``lorakit-shapes`` (the default: the offline stand-in of ``standin.py``, for
        ``lorakit-tiny-vit`` only).
    checkpoint: local weights file (open_clip/OpenAI state_dict, .bin/.pt/.safetensors);
        takes precedence over ``pretrained``.
    offline: ``"auto"`` (probe the hub for 2 s), true or false.
    """

    name: str = "lorakit-tiny-vit"
    pretrained: str | None = "lorakit-shapes"
    checkpoint: str | None = None
    precision: str = "fp32"
    cache_dir: str | None = None
    offline: bool | str = "auto"


@dataclass
class Backbone:
    """A loaded CLIP: the open_clip model, its tokenizer and image preprocessing values."""

    model: nn.Module
    tokenizer: object
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def register_tiny_configs() -> Path:
    """Write ``TINY_CONFIGS`` as JSON files and add them to open_clip's registry (once)."""
    global _registered
    import open_clip

    if _registered is not None and all(n in open_clip.list_models() for n in TINY_CONFIGS):
        return _registered
    folder = Path(tempfile.mkdtemp(prefix="lorakit-clip-configs-"))
    for name, cfg in TINY_CONFIGS.items():
        (folder / f"{name}.json").write_text(json.dumps(cfg, indent=2))
    open_clip.add_model_config(folder)
    _registered = folder
    return folder


def hub_reachable(timeout: float = 2.0) -> bool:
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def set_hub_offline() -> None:
    """Make huggingface_hub fail fast instead of retrying (env var + the live constant)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover - open_clip then downloads by URL only
        pass


def _cached_weights(pcfg: dict, cache_dir: str | None) -> str | None:
    """Path of the tag's weights in the local Hugging Face cache, or None."""
    hub = pcfg.get("hf_hub", "")
    if not hub:
        return None
    from huggingface_hub import try_to_load_from_cache

    repo, filename = os.path.split(hub)
    names = (
        [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    )
    for fname in names:
        hit = try_to_load_from_cache(repo, fname, cache_dir=cache_dir)
        if isinstance(hit, str):
            return hit
    return None


def _missing_weights_message(cfg: BackboneConfig, pcfg: dict) -> str:
    hub, url = pcfg.get("hf_hub", ""), pcfg.get("url", "")
    repo, filename = os.path.split(hub) if hub else ("", "")
    where = [
        f"the hub is not reachable and the weights of {cfg.name}/{cfg.pretrained} are not cached."
    ]
    if repo:
        fname = filename or "open_clip_model.safetensors"
        where.append(
            f"Fetch https://huggingface.co/{repo}/resolve/main/{fname} on a connected machine, then "
            f"either put it in the Hugging Face cache (huggingface-cli download {repo} {fname}"
            f"{' --cache-dir ' + cfg.cache_dir if cfg.cache_dir else ''}) or set "
            f"backbone.checkpoint=/path/to/{fname}."
        )
    elif url:
        where.append(f"Fetch {url} and set backbone.checkpoint=/path/to/{Path(url).name}.")
    return " ".join(where)


def _resolve_pretrained(cfg: BackboneConfig) -> str | None:
    """The ``pretrained`` value for open_clip: a file path or a tag whose weights can load."""
    import open_clip

    if cfg.checkpoint:
        path = Path(cfg.checkpoint).expanduser()
        if not path.is_file():
            raise ValueError(f"backbone.checkpoint: file {path} does not exist")
        return str(path)
    if not cfg.pretrained:
        return None
    from . import standin

    if cfg.pretrained == standin.TAG:
        if cfg.name != standin.ARCH:
            raise ValueError(
                f"backbone.pretrained: {standin.TAG!r} (the offline stand-in) exists for "
                f"{standin.ARCH} only, not {cfg.name}; set backbone.pretrained (e.g. openai), "
                "backbone.checkpoint=/path/to/weights, or backbone.pretrained=null (random)"
            )
        return cfg.pretrained
    if Path(cfg.pretrained).expanduser().is_file():
        return str(Path(cfg.pretrained).expanduser())
    pcfg = open_clip.get_pretrained_cfg(cfg.name, cfg.pretrained)
    if not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(cfg.name)
        raise ValueError(
            f"backbone.pretrained: {cfg.pretrained!r} is not a known tag for {cfg.name} "
            f"nor an existing file; known tags: {tags or 'none'}"
        )
    offline = not hub_reachable() if cfg.offline == "auto" else bool(cfg.offline)
    if offline:
        set_hub_offline()
        if _cached_weights(pcfg, cfg.cache_dir) is None:
            raise ValueError(_missing_weights_message(cfg, pcfg))
    return cfg.pretrained


class _NoRandomInitWarning(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded" line when no weights were asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def load_backbone(cfg: BackboneConfig, device: str | torch.device = "cpu") -> Backbone:
    """Build the open_clip model (eval mode, all weights trainable until ``inject`` freezes them)."""
    import open_clip

    register_tiny_configs()
    if open_clip.get_model_config(cfg.name) is None:
        raise ValueError(
            f"backbone.name: unknown open_clip model {cfg.name!r}; e.g. ViT-B-16, ViT-B-32, "
            f"or a tiny config: {', '.join(TINY_CONFIGS)}"
        )
    from . import standin

    pretrained = _resolve_pretrained(cfg)
    standin_path = standin.weights_path() if pretrained == standin.TAG else None
    if standin_path is not None:
        pretrained = None  # built at random, then the stand-in's weights are loaded below
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
    if standin_path is not None:
        model.load_state_dict(standin.load_state(standin_path))
        model.to(device)
    model.eval()
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    mean = tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(pp.get("std", open_clip.OPENAI_DATASET_STD))
    return Backbone(model, open_clip.get_tokenizer(cfg.name), int(size), mean, std)
