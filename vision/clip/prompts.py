"""Class names to prompts, and the zero-shot text classifier built from them.

``build_prompts(["red circle"], TEMPLATES["clip"])`` gives ``["a photo of a red circle."]``;
``text_classifier`` encodes all ``C x T`` prompts, averages each class's normalised
embeddings over its T templates and renormalises: a ``(C, D)`` matrix whose rows are the
zero-shot class weights (the head CLIP-LoRA starts from).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Named template sets: "clip" is the single template of the CLIP-LoRA recipe.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "clip": ("a photo of a {}.",),
    "ensemble": (
        "a photo of a {}.",
        "a bad photo of a {}.",
        "a photo of the large {}.",
        "a photo of the small {}.",
        "a rendering of a {}.",
        "a drawing of a {}.",
        "itap of a {}.",
    ),
    "shapes": ("a photo of a {}.", "a {} on a textured background."),
}


def resolve_templates(templates: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A ``TEMPLATES`` key or an explicit list; each template must contain ``{}`` once."""
    if isinstance(templates, str):
        if templates not in TEMPLATES:
            raise ValueError(
                f"data.templates: unknown template set {templates!r}; "
                f"use one of {sorted(TEMPLATES)} or a list of strings with {{}}"
            )
        return TEMPLATES[templates]
    out = tuple(templates)
    bad = [t for t in out if not isinstance(t, str) or t.count("{}") != 1]
    if bad or not out:
        raise ValueError(
            f"data.templates: every template needs exactly one '{{}}' for the class name; got {bad or out}"
        )
    return out


def build_prompts(classnames: list[str], templates: tuple[str, ...]) -> list[str]:
    """Class-major list of ``C * T`` prompts: class 0 with every template, then class 1, ..."""
    return [t.format(name.replace("_", " ")) for name in classnames for t in templates]


def class_embeddings(text_features: Tensor, n_templates: int) -> Tensor:
    """``(C*T, D)`` prompt features -> ``(C, D)`` unit class embeddings (mean over templates)."""
    feats = F.normalize(text_features, dim=-1)
    feats = feats.view(-1, n_templates, feats.shape[-1]).mean(1)
    return F.normalize(feats, dim=-1)


def text_classifier(clip: nn.Module, tokens: Tensor, n_templates: int) -> Tensor:
    """Zero-shot head ``(C, D)`` from tokenised prompts ``(C*T, L)`` through the text tower."""
    return class_embeddings(clip.encode_text(tokens), n_templates)


@torch.no_grad()
def zero_shot_head(
    clip: nn.Module, tokenizer, classnames: list[str], templates: tuple[str, ...]
) -> Tensor:
    """Convenience: tokenise prompts and build the zero-shot head without gradients."""
    device = next(clip.parameters()).device
    tokens = tokenizer(build_prompts(classnames, templates)).to(device)
    return text_classifier(clip, tokens, len(templates))
