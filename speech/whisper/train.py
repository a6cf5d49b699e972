"""Lightning training of a Whisper adapter: teacher-forced cross-entropy on transcripts.

Only the adapter tensors train (``trainable_parameters``); the base Whisper is frozen.
The loss is ``CE(next token) + regularization_loss(model)`` (S2-LoRA's L1 on the rank
coefficients); the proximal step runs after each optimizer step via the shared
``AdapterHooks`` callback. When no encoder layer is adapted and augmentation is off, the
encoder runs once per utterance and its output ``(n_audio_ctx, d)`` is cached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from whisper.model import Whisper

from lorakit.core import named_hosts, regularization_loss
from lorakit.data.runtime import AdapterModule, Schedule

from .config import TrainConfig
from .features import IGNORE


def encoder_is_adapted(model: Whisper) -> bool:
    return any(name.startswith("encoder.") for name, _ in named_hosts(model))


def sequence_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over labelled positions; ``logits (B, L, V)``, ``labels (B, L)``."""
    return F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE)


def global_token_mean(logits: Tensor, labels: Tensor) -> Tensor:
    """Like ``sequence_loss``, but under DDP the mean is over the labelled tokens of the
    *global* batch: each rank divides its token sum by the all-reduced token count (times
    the world size, which DDP's gradient averaging divides out again), so 2 processes
    train as 1 process with the same global batch even when their token counts differ."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return sequence_loss(logits, labels)
    total = F.cross_entropy(
        logits.float().transpose(1, 2), labels, ignore_index=IGNORE, reduction="sum"
    )
    count = (labels != IGNORE).sum().float()
    torch.distributed.all_reduce(count)
    return total * torch.distributed.get_world_size() / count.clamp_min(1)


class WhisperAdapterModule(AdapterModule):
    """Trains the adapters injected into ``model`` (kept as ``self.model``): AdamW, linear
    warm-up to a constant lr (the runtime's ``AdapterModule``)."""

    def __init__(self, model: Whisper, cfg: TrainConfig, cache_ok: bool = False):
        schedule = Schedule(1, max(1, cfg.warmup_steps), "constant")
        super().__init__(model, cfg.lr, cfg.weight_decay, schedule=schedule)
        self.cfg = cfg
        self.use_cache = cfg.cache_encoder and cache_ok and not encoder_is_adapted(model)
        self._cache: dict[str, Tensor] = {}
        # DDP broadcasts every buffer at start; gloo/NCCL cannot send Whisper's sparse
        # ``alignment_heads`` (and it never changes), so DDP leaves it alone
        sparse = [f"model.{n}" for n, b in model.named_buffers() if b.is_sparse]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, sparse)

    def on_fit_start(self) -> None:
        self.model.train()

    def audio_features(self, ids: list[str], mels: Tensor) -> Tensor:
        """``mels (B, n_mels, frames)`` -> ``(B, n_audio_ctx, d)``; no grad when the encoder is frozen."""
        if encoder_is_adapted(self.model):
            return self.model.encoder(mels)
        if not self.use_cache:
            with torch.no_grad():
                return self.model.encoder(mels)
        todo = [i for i, k in enumerate(ids) if k not in self._cache]
        if todo:
            with torch.no_grad():
                out = self.model.encoder(mels[todo])
            for j, i in enumerate(todo):
                self._cache[ids[i]] = out[j]
        return torch.stack([self._cache[k] for k in ids])

    def batch_size(self, batch: dict) -> int:
        return len(batch["ids"])

    def task_loss(self, batch: dict, batch_idx: int) -> Tensor:
        feats = self.audio_features(batch["ids"], batch["mels"])
        logits = self.model.decoder(batch["inputs"], feats)
        bs = len(batch["ids"])
        self.log("train_ce", sequence_loss(logits, batch["labels"]), batch_size=bs)
        self.log("train_reg", regularization_loss(self.model).detach(), batch_size=bs)
        return global_token_mean(logits, batch["labels"])
