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
        ax.legend(fontsize=8, loc="best", framealpha=0.7)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=110)


def severity_curves(
    table: dict[str, dict[str, float]], out_png: str | Path, clean: float | None = None
) -> Path:
    """Accuracy vs severity, one line per corruption (``table[name][severity]``)."""
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for i, (name, row) in enumerate(table.items()):
        sev = sorted(row, key=int)
        ax.plot(
            [int(s) for s in sev],
            [row[s] for s in sev],
            label=name,
            lw=1.3,
            ms=4,
            **line_style(i),
        )
    if clean is not None:
        ax.axhline(clean, color="k", ls="--", lw=1, label="clean ID")
    ax.set_xlabel("corruption severity (1 mild - 5 strong)")
    ax.set_ylabel("accuracy on corrupted ID test images")
    ax.set_title("accuracy vs corruption severity")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(sorted({int(s) for row in table.values() for s in row}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside the data
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=110)


def line_style(i: int) -> dict:
    """Distinct colour + line style + marker for line ``i`` (20 colours, then styles vary)."""
    colours = plt.get_cmap("tab20").colors
    styles, markers = ("-", "--", ":", "-."), ("o", "s", "^", "D", "v", "P", "X")
    return {
        "color": colours[(2 * i) % 20 if i < 10 else (2 * i + 1) % 20],
        "ls": styles[i % len(styles)],
        "marker": markers[i % len(markers)],
    }


def largo_curves(series: dict[str, dict[str, list[float]]], out_png: str | Path) -> Path | None:
    """Two panels: gamma_l and ||W_eff - W0||_F (solid) / ||D_l||_F (dotted) per layer."""
    if not series:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.3), layout="constrained")
    cmap = plt.get_cmap("viridis")
    n = len(series)
    for i, (_layer, d) in enumerate(series.items()):
        c = cmap(i / max(1, n - 1))
        a.plot(d["step"], positive(d["gamma"]), color=c, lw=1)
        b.plot(d["step"], positive(d["effective_norm"]), color=c, lw=1.2)
        b.plot(d["step"], positive(d["update_norm"]), color=c, lw=0.7, ls=":")
    a.set_title(f"learned radius gamma_l of each layer ({n} layers)")
    a.set_ylabel("gamma_l (log scale)")
    b.set_title("size of each layer's weight change")
    b.set_ylabel("Frobenius norm (log scale)")
    for ax in (a, b):
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        fit_log_limits(ax)
    from matplotlib.lines import Line2D

    b.legend(
        [Line2D([], [], color="#555", lw=1.2), Line2D([], [], color="#555", lw=0.7, ls=":")],
        ["||W_eff - W0||_F (after the radius projection)", "||D_l||_F (before it)"],
        fontsize=7,
        loc="lower right",
    )
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max(1, n - 1)))
    fig.colorbar(sm, ax=[a, b], label="layer (in model order)", fraction=0.03, pad=0.02)
    return save_figure(fig, out_png, dpi=110)


def positive(values) -> np.ndarray:
    """Values for a log axis: zeros and negatives (e.g. the update at step 0) become gaps."""
    v = np.asarray(values, dtype=float)
    return np.where(v > 0, v, np.nan)


def fit_log_limits(ax) -> None:
    """y limits that hold every drawn positive value (no line leaves the log axis)."""
    ys = [y for line in ax.get_lines() for y in np.asarray(line.get_ydata(), float)]
    ys = [y for y in ys if np.isfinite(y) and y > 0]
    if ys:
        ax.set_ylim(min(ys) / 1.5, max(ys) * 1.5)
