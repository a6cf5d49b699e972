"""Plots every pipeline writes (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG (creating the folder) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def read_csv_log(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Lightning CSVLogger metrics.csv -> {metric: [(step, value), ...]}."""
    series: dict[str, list[tuple[int, float]]] = {}
    path = Path(path)
    if not path.is_file():
        return series
    with path.open() as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for k, v in row.items():
                if k in ("step", "epoch") or v in ("", None):
                    continue
                series.setdefault(k, []).append((step, float(v)))
    return series


def plot_training_curve(
    log_csv: str | Path, out_png: str | Path, keys: tuple[str, ...] = ("train_loss",)
) -> Path | None:
    series = read_csv_log(log_csv)
    keys = [k for k in keys if k in series] or [k for k in series if "loss" in k]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in keys:
        steps, vals = zip(*series[k], strict=True)
        ax.plot(steps, vals, label=k)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, out_png)


def bar_chart(
    labels: list[str], values: list[float], out_png: str | Path, title: str, ylabel: str
) -> Path:
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(labels) + 2), 3.5))
    ax.bar(range(len(labels)), values, color="#4C72B0")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, out_png)
