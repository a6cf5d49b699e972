"""Robustness pictures: ID vs OOD scatter with the baseline line, accuracy vs severity per
corruption, LARGO's per-layer radius and update norm over training."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lorakit.data.plots import save_figure

from .robustness import Line  # noqa: E402


def id_vs_ood(
    points: dict[str, tuple[float, float]],
    out_png: str | Path,
    line: Line | None = None,
    curves: dict[str, list[tuple[float, float]]] | None = None,
    title: str = "ID vs OOD accuracy",
) -> Path:
    """Scatter of named ``(id, ood)`` points, optional baseline line and WiSE-FT curves."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, pts in (curves or {}).items():
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, "-", alpha=0.6, marker=".", label=name)
    for name, (x, y) in points.items():
        ax.scatter([x], [y], s=40, zorder=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    every = [p for p in points.values()] + [p for c in (curves or {}).values() for p in c]
    if line is not None and every:
        lo, hi = min(p[0] for p in every), max(p[0] for p in every)
        xs = np.linspace(max(lo - 0.05, 0.01), min(hi + 0.05, 0.99), 50)
        ax.plot(xs, [line.predict(float(x)) for x in xs], "k--", lw=1, label="baseline fit (logit)")
    ax.set_xlabel("ID accuracy")
    ax.set_ylabel("OOD accuracy (mean)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves or line is not None:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=110)


def severity_curves(
    table: dict[str, dict[str, float]], out_png: str | Path, clean: float | None = None
) -> Path:
    """Accuracy vs severity, one line per corruption (``table[name][severity]``)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, row in table.items():
        sev = sorted(row, key=int)
        ax.plot([int(s) for s in sev], [row[s] for s in sev], marker="o", ms=3, label=name)
    if clean is not None:
        ax.axhline(clean, color="k", ls="--", lw=1, label="clean ID")
    ax.set_xlabel("severity")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=110)


def largo_curves(series: dict[str, dict[str, list[float]]], out_png: str | Path) -> Path | None:
    """Two panels: gamma_l and ||W_eff - W0||_F (solid) / ||D_l||_F (dotted) per layer."""
    if not series:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    cmap = plt.get_cmap("viridis")
    for i, (_layer, d) in enumerate(series.items()):
        c = cmap(i / max(1, len(series) - 1))
        a.plot(d["step"], d["gamma"], color=c, lw=1)
        b.plot(d["step"], d["effective_norm"], color=c, lw=1)
        b.plot(d["step"], d["update_norm"], color=c, lw=0.6, ls=":")
    a.set_title(f"radius gamma_l ({len(series)} layers)")
    b.set_title("||W_eff - W0||_F (solid), ||D_l||_F unprojected (dotted)")
    for ax in (a, b):
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=110)
