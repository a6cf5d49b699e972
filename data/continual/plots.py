"""Pictures of a continual run: the task-by-task matrix as a heatmap, and per-task curves
(the score on each task after each training stage)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def matrix_heatmap(matrix, tasks, rows, path: Path, title: str, higher_is_better=True) -> Path:
    """``matrix[i][j]``: score on task ``j`` (columns) after training row ``i``."""
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(tasks), 1.0 + 0.8 * len(matrix)))
    ax.imshow(matrix, cmap="viridis" if higher_is_better else "viridis_r", aspect="auto")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", color="w", fontsize=9)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20)
    ax.set_yticks(range(len(matrix)), ["after " + "+".join(r) for r in rows])
    ax.set_xlabel("evaluated on")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def task_curves(matrix, before, tasks, path: Path, title: str) -> Path:
    """One line per task: its score before training and after each stage."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    xs = list(range(len(matrix) + 1))
    for j, name in enumerate(tasks):
        ax.plot(xs, [before[j]] + [row[j] for row in matrix], marker="o", label=name)
    ax.set_xticks(xs, ["before"] + [f"after {i + 1}" for i in range(len(matrix))])
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)
