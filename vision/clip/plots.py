"""CLIP run pictures: per-class accuracy (zero-shot vs adapted) and, for Comp-LoRA, the
singular spectrum of each adapted weight with the protected top-k directions marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from lorakit.core import named_methods  # noqa: E402
from lorakit.data.plots import save_figure


def per_class_plot(
    adapted: dict[str, float],
    zero_shot: dict[str, float],
    out_png: str | Path,
    title: str = "per-class top-1 accuracy",
) -> Path:
    names = list(adapted)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 3.8))
    ax.bar(
        x - 0.2, [zero_shot.get(n, np.nan) for n in names], 0.4, label="zero-shot", color="#999999"
    )
    ax.bar(x + 0.2, [adapted[n] for n in names], 0.4, label="adapted", color="#4C72B0")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, not on them
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=110)


@torch.no_grad()
def protected_spectra(model: nn.Module) -> list[tuple[str, np.ndarray, int]]:
    """``(layer:slot, singular values of W0, protected k)`` for every Comp-LoRA slot."""
    out = []
    for name, slot, method in named_methods(model):
        if method.name != "comp_lora":
            continue
        host = model.get_submodule(name)
        w = host.slot_weight(slot).detach().float()
        if method.adapter_name in host.merged_names:  # spectrum of the pretrained weight
            w = w - method.delta_weight().reshape(w.shape)
        s = torch.linalg.svdvals(w.reshape(method.d_out, method.d_in)).cpu().numpy()
        out.append((f"{name}:{slot}", s, int(method.k)))
    return out


def spectrum_plot(model: nn.Module, out_png: str | Path, max_layers: int = 12) -> Path | None:
    """Normalised singular values per Comp-LoRA slot; the protected top-k drawn solid."""
    spectra = protected_spectra(model)
    if not spectra:
        return None
    fig, ax = plt.subplots(figsize=(10, 4.5))
    colours = plt.get_cmap("tab20").colors  # up to 20 distinct colours for max_layers lines
    for i, (label, s, k) in enumerate(spectra[:max_layers]):
        idx = np.arange(1, len(s) + 1)
        c = colours[i % len(colours)]
        ax.plot(idx[:k], s[:k] / s[0], lw=1.8, color=c, label=f"{label} (k={k})")
        ax.plot(idx[k:], s[k:] / s[0], lw=0.8, ls="--", color=c)
    ax.set_xlabel("singular value index")
    ax.set_ylabel("sigma / sigma_1")
    ax.set_title("Comp-LoRA: protected spectrum of W0 (solid = protected)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the data
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=110)
