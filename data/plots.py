"""Plots every pipeline writes (matplotlib, Agg backend, PNG files).

Every PNG saved into a run folder (``<run>/plots/*.png``) gets a first title line naming the
run and its method, read from ``<run>/config.yaml``, so a picture says what it shows.
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# config section only one pipeline has -> that pipeline (as lorakit.apps.run_kind.SIGNATURES;
# model and method: runs written before the one config vocabulary)
METHOD_KEYS = {"head": "clip", "prompts": "cod", "augment": "asr", "model": "asr", "method": "ood"}


def _pipeline(cfg: dict) -> str | None:
    kinds = {p for key, p in METHOD_KEYS.items() if key in cfg}
    if isinstance(cfg.get("data"), dict) and "shift" in cfg["data"]:
        kinds.add("ood")
    return kinds.pop() if len(kinds) == 1 else None


def run_label(png: str | Path) -> str | None:
    """``"run <name>: <pipeline> pipeline, method <method>"`` for a PNG under ``<run>/plots/`` whose run folder
    holds ``config.yaml``; None elsewhere."""
    png = Path(png)
    run = png.parent.parent
    cfg_file = run / "config.yaml"
    if png.parent.name != "plots" or not cfg_file.is_file():
        return None
    try:
        cfg = yaml.safe_load(cfg_file.read_text()) or {}
    except yaml.YAMLError:
        return None
    pipeline = _pipeline(cfg)
    old = pipeline == "ood" and "method" in cfg  # ood's method: {name} before the rename
    section = cfg.get("method") if old else cfg.get("adapter")
    method = (section or {}).get("name" if old else "method") if isinstance(section, dict) else None
    parts = [f"{pipeline} pipeline" if pipeline else "", f"method {method}" if method else ""]
    parts = [p for p in parts if p]
    return f"run {run.name}: {', '.join(parts)}" if parts else f"run {run.name}"


def save_figure(fig, path: str | Path, dpi: int = 110, label: str | None = None) -> Path:
    """Write ``fig`` as a PNG (creating the folder) and free it. ``label`` (default
    ``run_label(path)``) becomes the figure's top title line, above its own suptitle and the
    axes' titles."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label = label or run_label(path)
    if label:
        own = fig.get_suptitle()  # keep a figure's own overall title as a second line
        fig.suptitle(f"{label}\n{own}" if own else label, fontsize=9 if not own else None)
        try:  # constrained layout makes room for the suptitle (tight_layout may overlap it)
            fig.set_layout_engine("constrained")
        except RuntimeError:  # a colorbar laid out by another engine: make room by hand
            fig.subplots_adjust(top=1 - (0.8 if own else 0.6) / fig.get_figheight())
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
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
    log_csv: str | Path,
    out_png: str | Path,
    keys: tuple[str, ...] = ("train_loss",),
    title: str | None = None,
    note: str | None = None,
) -> Path | None:
    """The logged losses over steps; ``note`` is a small caption under the axes (why the
    curve looks as it does)."""
    series = read_csv_log(log_csv)
    keys = [k for k in keys if k in series] or [k for k in series if "loss" in k]
    if not keys:
        return None
    if note is None:  # say why a short curve can wander up and down
        steps = [s for s, _ in series[keys[0]]]
        every = (steps[-1] - steps[0]) / max(1, len(steps) - 1)
        note = (
            f"{len(steps)} logged values, one batch every ~{every:.0f} steps: a single batch's "
            "loss is noisy, so read the trend of the bold moving average (5 values)."
        )
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, k in enumerate(keys):
        steps, vals = zip(*series[k], strict=True)
        colour = f"C{i}"
        ax.plot(steps, vals, color=colour, lw=0.8, alpha=0.35)
        ax.plot(steps, moving_average(vals), color=colour, lw=1.8, label=k)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title or "training loss (faint: each logged batch; bold: moving average)")
    ax.grid(alpha=0.3)
    if len(keys) > 1:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    if note:  # a figure-level x label: the layout keeps it clear of the axes
        fig.supxlabel(textwrap.fill(note, 100), fontsize=7, color="#555555")
    fig.tight_layout()
    return save_figure(fig, out_png)


def moving_average(values, window: int = 5) -> list[float]:
    """Trailing mean over up to ``window`` values (one batch's loss is noisy)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


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
