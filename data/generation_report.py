"""How a generated adapter compares with its baselines over held-out tasks: one summary,
a Markdown table and a plot, shared by ``lorakit generate report`` (CLIP accuracy) and
``demos/bench_generate.py`` (toy-family MSE).

``rows`` holds one dict per held-out task, ``{column: score}`` (e.g. ``zero-shot``,
``nearest bank``, ``generated``, ``trained``). ``summarise`` gives, per column, the mean and
the half width of the 95 % Student-t interval over tasks, and for every other column the
paired difference ``reference - column`` (same tasks) with its interval and the number of
tasks where the reference is better (``higher_is_better`` says which way that is).
"""

from __future__ import annotations

from pathlib import Path

from .intervals import mean_ci, paired_diff


def summarise(rows: list[dict], columns: list[str], reference: str = "generated",
              higher_is_better: bool = True) -> dict:  # fmt: skip
    """``{n, reference, higher_is_better, columns: {name: {mean, half, values, diff_mean,
    diff_half, wins}}}`` (``diff_*``, ``wins``: ``None`` on the reference's own row)."""
    if not rows:
        raise ValueError("no held-out tasks to summarise")
    missing = [c for c in [*columns, reference] if c not in rows[0]]
    if missing:
        raise ValueError(f"rows have no column {missing[0]!r}")
    ref = [r[reference] for r in rows]
    out = {}
    for c in columns:
        values = [r[c] for r in rows]
        mean, half = mean_ci(values)
        entry = {"mean": mean, "half": half, "values": values,
                 "diff_mean": None, "diff_half": None, "wins": None}  # fmt: skip
        if c != reference:
            entry["diff_mean"], entry["diff_half"] = mean_ci(paired_diff(ref, values))
            entry["wins"] = sum((a > b) if higher_is_better else (a < b)
                                for a, b in zip(ref, values, strict=True))  # fmt: skip
        out[c] = entry
    return {"n": len(rows), "reference": reference, "higher_is_better": higher_is_better,
            "columns": out}  # fmt: skip


def _pm(mean: float, half: float, digits: int) -> str:
    return f"{mean:.{digits}f}" if half != half else f"{mean:.{digits}f} ± {half:.{digits}f}"


def markdown(summary: dict, metric: str, digits: int = 3) -> str:
    """The summary as a Markdown table: the metric (mean ± 95 %), the paired difference
    ``reference - column`` (mean ± 95 %) and the reference's wins."""
    ref, n = summary["reference"], summary["n"]
    better = "higher" if summary["higher_is_better"] else "lower"
    lines = [
        f"| adapter | {metric} (mean ± 95 %, {n} held-out tasks) | {ref} − adapter "
        f"(paired, mean ± 95 %) | tasks where {ref} is better ({better} {metric}) |",
        "|---|---|---|---|",
    ]
    for name, e in summary["columns"].items():
        if e["diff_mean"] is None:
            lines.append(f"| {name} | {_pm(e['mean'], e['half'], digits)} | – | – |")
        else:
            lines.append(f"| {name} | {_pm(e['mean'], e['half'], digits)} | "
                         f"{_pm(e['diff_mean'], e['diff_half'], digits)} | {e['wins']} of {n} |")  # fmt: skip
    return "\n".join(lines)


def plot(summary: dict, path: str | Path, title: str, ylabel: str,
         ylim: tuple[float, float] | None = None) -> Path:
    """Bars of the column means with 95 % error bars, each task's score as a dot
    (``ylim``: the axis range, e.g. ``(0, 1)`` for an accuracy)."""
    from .plots import plt, save_figure

    names = list(summary["columns"])
    entries = [summary["columns"][k] for k in names]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2.5, 3.8))
    xs = range(len(names))
    errs = [0.0 if e["half"] != e["half"] else e["half"] for e in entries]
    colours = ["#C44E52" if k == summary["reference"] else "#4C72B0" for k in names]
    ax.bar(xs, [e["mean"] for e in entries], yerr=errs, capsize=5, color=colours, alpha=0.85,
           label=f"mean ± 95 % over {summary['n']} held-out tasks")  # fmt: skip
    for x, e in zip(xs, entries, strict=True):
        ax.plot([x] * len(e["values"]), e["values"], "k.", alpha=0.6)
    ax.plot([], [], "k.", label="one held-out task")
    ax.set_xticks(list(xs), names)
    ax.set_xlabel("adapter")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)
