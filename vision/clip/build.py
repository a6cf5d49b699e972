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

import os
import socket
from pathlib import Path

import torch

from .backbone import (
    TINY_CONFIGS,
    Backbone,
    BackboneConfig,
    check_name,
    create,
    register_tiny_configs,
)

__all__ = [
    "TINY_CONFIGS",
    "Backbone",
    "BackboneConfig",
    "hub_reachable",
    "load_backbone",
    "register_tiny_configs",
    "set_hub_offline",
]

HUB_HOST = ("huggingface.co", 443)


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


def load_backbone(cfg: BackboneConfig, device: str | torch.device = "cpu") -> Backbone:
    """Build the open_clip model (eval mode, all weights trainable until ``inject`` freezes them)."""
    check_name(cfg.name)
    from . import standin  # lazily: it imports the caption generators

    pretrained = _resolve_pretrained(cfg)
    state = None
    if pretrained == standin.TAG:  # built at random, then the stand-in's weights are loaded
        pretrained = None
        state = standin.load_state(standin.weights_path())
    return create(cfg, pretrained, device, state)
