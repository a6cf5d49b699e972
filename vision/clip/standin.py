"""The offline CLIP stand-in: ``lorakit-tiny-vit`` pretrained contrastively on captioned
generated images (``lorakit.data.captions``), so zero-shot classification, retention and
base-to-novel mean something on a machine that cannot fetch real CLIP weights.

    bb = load_backbone(BackboneConfig(name="lorakit-tiny-vit", pretrained="lorakit-shapes"))

The weights ship with the package (``standin/lorakit-shapes-seed0.safetensors``, checked
against ``SHA256`` on load); they were built by

    python -m lorakit.vision.clip.standin --threads 1 \
        --out vision/clip/standin/lorakit-shapes-seed0.safetensors

(``BuildSpec()`` defaults: seed 0, 600 steps; 5.5 min on one core of a busy 2-core machine;
another CPU or torch build may differ in the last bits, hence a recorded checksum rather than
a rebuild in CI). When the shipped file is absent the same build runs once into the cache
(``$LORAKIT_CACHE`` or ``~/.cache/lorakit``) and is reused. Pretraining never shows the ``(colour, shape)`` pairs of
``captions.COMBOS.unseen()``. The file holds every tensor except the token embedding, of
which only the rows of tokens the captions use are stored (the rest are zero: those words
were never trained), which keeps it under 1 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lorakit.data import captions, shapes

from .backbone import BackboneConfig, create

log = logging.getLogger(__name__)
TAG = "lorakit-shapes"
ARCH = "lorakit-tiny-vit"
SHIPPED = Path(__file__).with_name("standin") / "lorakit-shapes-seed0.safetensors"
SHA256 = "be5bd627a100b01694555ad2c491557cfe5ca4d23468ca185ed99c301eda3858"
EMBED = "token_embedding.weight"


@dataclass(frozen=True)
class BuildSpec:
    """How the stand-in is pretrained (all of it is recorded in the file's metadata)."""

    seed: int = 0
    steps: int = 600
    pool: int = 12000  # captioned images rendered once, drawn from at random
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    image_size: int = 32


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, fits) -> torch.Tensor:
    """CLIP's symmetric loss with multiple positives: unit features ``(B, D)``; ``fits``
    ``(B, B)`` bool (image i fits caption j). Targets spread evenly over the fitting items."""
    logits = scale * img @ txt.T
    m = fits.float()
    li = -(F.log_softmax(logits, 1) * m / m.sum(1, keepdim=True)).sum(1).mean()
    lt = -(F.log_softmax(logits, 0) * m / m.sum(0, keepdim=True)).sum(0).mean()
    return (li + lt) / 2


def _normalise(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def pretrain(spec: BuildSpec, progress: bool = True) -> tuple[dict, list[float]]:
    """Train every weight of a fresh ``ARCH`` on captioned images of ``COMBOS.pretrain``.

    Returns ``(state_dict, losses per step)``. Deterministic for a seed on one machine.
    """
    torch.manual_seed(spec.seed)
    bb = create(BackboneConfig(name=ARCH, pretrained=None), None)
    model = bb.model
    images, texts, keys = captions.captioned_images(
        captions.COMBOS.pretrain, spec.pool, spec.image_size, spec.seed
    )
    x, tokens = _normalise(images, bb.mean, bb.std), bb.tokenizer(texts)
    fits = torch.from_numpy(captions.matches(keys))
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=spec.lr, total_steps=max(1, spec.steps), pct_start=0.1
    )
    g = torch.Generator().manual_seed(spec.seed)
    model.train()
    losses, start = [], time.monotonic()
    for step in range(spec.steps):
        idx = torch.randint(0, len(x), (spec.batch_size,), generator=g)
        xb = x[idx]
        flip = torch.rand(len(idx), generator=g) < 0.5  # captions name no side: flips are free
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        img = F.normalize(model.encode_image(xb), dim=-1)
        txt = F.normalize(model.encode_text(tokens[idx]), dim=-1)
        scale = model.logit_scale.exp().clamp(max=100)
        loss = contrastive_loss(img, txt, scale, fits[idx][:, idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress and (step % 50 == 0 or step == spec.steps - 1):
            log.info("pretrain %s step %d/%d loss %.3f (%.0f s)", TAG, step, spec.steps,
                     losses[-1], time.monotonic() - start)
    model.eval()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, losses


def used_tokens(tokenizer) -> torch.Tensor:
    """Sorted ids of every token the pretraining captions and prompt templates can produce."""
    from .prompts import TEMPLATES

    words = [*captions.COLOURS, *captions.SHAPES, *shapes.BACKGROUNDS]
    texts = [t.format(c=w, s=w, b=w) for t in captions.TEMPLATES + captions.CARTOON_TEMPLATES
             for w in words]
    texts += [t.format(w) for ts in TEMPLATES.values() for t in ts for w in words]
    return torch.unique(tokenizer(texts).flatten())


def save(path: str | Path, state: dict, spec: BuildSpec, keep_rows: torch.Tensor) -> str:
    """Write ``state`` (token embedding reduced to ``keep_rows``) atomically; returns sha256."""
    from safetensors.torch import save_file

    path = Path(path)
    out = {k: v.contiguous() for k, v in state.items() if k != EMBED}
    out[EMBED + ".rows"] = keep_rows.to(torch.int64).contiguous()
    out[EMBED + ".values"] = state[EMBED][keep_rows].contiguous()
    meta = {"tag": TAG, "arch": ARCH, "vocab": str(state[EMBED].shape[0]),
            "spec": json.dumps(asdict(spec))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(out, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)  # a shipped file, readable by everyone
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256(path)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_state(path: str | Path) -> dict:
    """The full open_clip state dict of a stand-in file (unused embedding rows are zero)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("tag") != TAG:
            raise ValueError(f"{path} is not a {TAG} stand-in file (metadata tag {meta.get('tag')!r})")
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    rows, values = state.pop(EMBED + ".rows"), state.pop(EMBED + ".values")
    embed = torch.zeros(int(meta["vocab"]), values.shape[1], dtype=values.dtype)
    embed[rows] = values
    state[EMBED] = embed
    return state


def cache_dir() -> Path:
    return Path(os.environ.get("LORAKIT_CACHE") or Path.home() / ".cache" / "lorakit") / "clip"


def weights_path() -> Path:
    """The stand-in's weights: the shipped file (sha256-checked), else the cached build
    (built once on first use, a few minutes on CPU)."""
    if SHIPPED.is_file():
        if SHA256 is not None and sha256(SHIPPED) != SHA256:
            raise ValueError(
                f"{SHIPPED} does not match its recorded sha256 (a damaged checkout or a Git LFS "
                f"pointer?); restore it, or delete it to rebuild the stand-in into {cache_dir()}"
            )
        return SHIPPED
    spec = BuildSpec()
    path = cache_dir() / f"{TAG}-seed{spec.seed}-steps{spec.steps}.safetensors"
    if not path.is_file():
        log.warning("building the CLIP stand-in %s into %s (once, a few minutes)", TAG, path)
        build(path, spec)
    return path


def build(path: str | Path, spec: BuildSpec = BuildSpec()) -> tuple[str, list[float]]:
    """Pretrain with ``spec`` and write the stand-in file; returns ``(sha256, losses)``."""
    state, losses = pretrain(spec)
    tokenizer = create(BackboneConfig(name=ARCH, pretrained=None), None).tokenizer
    return save(path, state, spec, used_tokens(tokenizer)), losses


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="build the lorakit-shapes CLIP stand-in")
    ap.add_argument("--out", type=Path, default=SHIPPED)
    ap.add_argument("--seed", type=int, default=BuildSpec.seed)
    ap.add_argument("--steps", type=int, default=BuildSpec.steps)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    digest, losses = build(args.out, BuildSpec(seed=args.seed, steps=args.steps))
    print(f"wrote {args.out} sha256 {digest}; loss {losses[0]:.3f} -> {losses[-1]:.3f}")


if __name__ == "__main__":
    main()
