"""The rank heatmap of rank-changing methods (SoRA, IncreLoRA, LoRA-Squeeze, DiffoRA).

Rows: layers (the block index in the slot's name, e.g. ``resblocks.3``), columns: modules
(the slot's name with the block index replaced by ``*``, e.g. ``visual...attn:q``); a cell
is the slot's final rank, a slot absent from that layer is grey. Titles, axis labels and a
colour bar with its label are always drawn.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import numpy as np

from .plots import save_figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_BLOCK = re.compile(r"[._](\d+)(?=\.|:|$)")  # resblocks.3.attn, encoder_layer_0.mlp


def _layer_module(name: str) -> tuple[str, str]:
    m = _BLOCK.search(name)
    if m is None:
        return "-", name
    return m.group(1), name[: m.start() + 1] + "*" + name[m.end():]


def _short(module: str) -> str:
    for long, short in (("visual.transformer.resblocks.*.", "vision."),
                        ("transformer.resblocks.*.", "text."), ("image_encoder.blocks.*.", ""),
                        ("encoder.blocks.*.", "enc."), ("decoder.blocks.*.", "dec."),
                        ("mask_decoder.transformer.", "mask_dec.")):
        if module.startswith(long):
            return short + module[len(long):]
    return module


def _labels(modules: list[str]) -> tuple[list[str], str]:
    """Short column labels and the dotted prefix they all shared (named on the axis)."""
    short = [_short(m) for m in modules]
    parts = [s.split(".") for s in short]
    n = 0
    while len(short) > 1 and all(len(p) > n + 1 and p[n] == parts[0][n] for p in parts):
        n += 1
    prefix = ".".join(parts[0][:n])
    return [".".join(p[n:]) for p in parts], (prefix + "." if prefix else "")


def rank_heatmap(ranks: dict[str, int], path: str | Path, title: str) -> Path | None:
    """Write the heatmap of ``ranks`` (``{layer[:slot]: rank}``) to ``path``; None if empty."""
    if not ranks:
        return None
    cells = [(*_layer_module(n), r) for n, r in ranks.items()]
    layers = sorted({c[0] for c in cells}, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    modules = sorted({c[1] for c in cells})
    grid = np.full((len(layers), len(modules)), np.nan)
    for layer, module, r in cells:
        grid[layers.index(layer), modules.index(module)] = r
    labels, prefix = _labels(modules)
    longest = max(len(t) for t in labels)  # rotated tick labels need that much height
    fig, ax = plt.subplots(
        figsize=(4 + 0.6 * len(modules), 3 + 0.3 * len(layers) + 0.06 * longest)
    )
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#bbbbbb")
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap,
                   interpolation="nearest", vmin=0)
    for i in range(len(layers)):
        for j in range(len(modules)):
            if not np.isnan(grid[i, j]):
                dark = grid[i, j] < 0.6 * np.nanmax(grid)  # viridis: light cells get black text
                ax.text(j, i, int(grid[i, j]), ha="center", va="center", fontsize=6,
                        color="w" if dark else "k")
    ax.set_xticks(range(len(modules)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(layers)), layers, fontsize=7)
    ax.set_xlabel(f"module (under {prefix})" if prefix else "module")
    ax.set_ylabel("layer (block index)")
    total = sum(ranks.values())
    ax.set_title(f"{title}: final rank per layer and module (total {total})", fontsize=9)
    bar = fig.colorbar(im, ax=ax, fraction=0.05)
    bar.set_label("rank")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
