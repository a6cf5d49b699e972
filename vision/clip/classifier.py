"""CLIP as a classifier: ``logits = scale * cos(image features, class embeddings)``.

The class embeddings come from the text tower on the class prompts. When the text tower
carries adapters they are recomputed on every forward pass (the CLIP-LoRA recipe: the
head moves with the adapted text encoder), and likewise when text-tower Linears were replaced
by trainable SLTrain layers (``lorakit.core.replace_weights``); otherwise they are computed
once and cached.
What trains: only the adapter tensors ``inject`` left trainable (``logit_scale`` and all
base weights are frozen).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorakit.core import SLTrainLinear, named_hosts

from .prompts import build_prompts, text_classifier


class ClipClassifier(nn.Module):
    """``forward(images (N, 3, S, S)) -> logits (N, C)`` for the current class prompts.

    ``logit_scale``: a fixed multiplier (CLIP-LoRA uses 100), or None for the model's own
    ``logit_scale.exp()``.
    """

    def __init__(
        self,
        clip: nn.Module,
        tokenizer,
        classnames: list[str],
        templates: tuple[str, ...],
        logit_scale: float | None = None,
    ):
        super().__init__()
        self.clip, self.tokenizer = clip, tokenizer
        self.fixed_scale = logit_scale
        self._cache: Tensor | None = None
        self._cache_key: tuple = ()
        self.set_classes(classnames, templates)

    def set_classes(self, classnames: list[str], templates: tuple[str, ...]) -> None:
        """Switch the head to another class list (base/novel, a held-out dataset)."""
        if not classnames:
            raise ValueError("the classifier needs at least one class name")
        self.classnames, self.templates = list(classnames), tuple(templates)
        device = self.clip.logit_scale.device
        self.register_buffer(
            "tokens",
            self.tokenizer(build_prompts(self.classnames, self.templates)).to(device),
            persistent=False,
        )
        self._cache = None

    def _text_hosts(self):
        return [(n, h) for n, h in named_hosts(self.clip) if not n.startswith("visual.")]

    @property
    def text_adapted(self) -> bool:
        """The text tower trains: an active adapter, or a replaced layer that trains."""
        return any(h.active for _, h in self._text_hosts()) or any(
            isinstance(m, SLTrainLinear) and any(p.requires_grad for p in m.parameters())
            for n, m in self.clip.named_modules()
            if not n.startswith("visual.")
        )

    def scale(self) -> Tensor:
        if self.fixed_scale is not None:
            return torch.tensor(float(self.fixed_scale), device=self.tokens.device)
        return self.clip.logit_scale.detach().exp()

    def class_head(self) -> Tensor:
        """Unit class embeddings ``(C, D)``; differentiable when the text tower is adapted."""
        if self.text_adapted:
            self._cache = None
            return text_classifier(self.clip, self.tokens, len(self.templates))
        # the frozen text tower's output only changes when its adapters merge or unmerge
        key = (
            str(self.tokens.device),
            tuple((n, h.merged, h.disabled) for n, h in self._text_hosts()),
        )
        if self._cache is None or self._cache_key != key:
            with torch.no_grad():
                self._cache = text_classifier(self.clip, self.tokens, len(self.templates))
            self._cache_key = key
        return self._cache

    def image_features(self, images: Tensor) -> Tensor:
        return F.normalize(self.clip.encode_image(images), dim=-1)

    def forward(self, images: Tensor) -> Tensor:
        head = self.class_head()
        feats = self.image_features(images)
        return self.scale() * feats @ head.to(feats.dtype).T
