"""The report of ``lorakit compare``: per method the lr chosen on validation and the test
metric of that lr over seeds (mean, 95 % t-interval, difference to LoRA with Welch's
interval), trainable parameters, median step time and peak memory.

Writes ``compare.csv``, ``compare.md``, ``metrics.json`` and ``compare.png`` (test metric
vs trainable parameters, log x, error bars = the 95 % intervals).
"""

from __future__ import annotations

import csv
import io
import statistics
import textwrap
from pathlib import Path

from lorakit.apps.compare.stats import choose_lr, t_interval, welch_interval
from lorakit.data.runs import atomic_write_text, write_json

COLUMNS = (
    "method", "metric", "mean", "ci95_low", "ci95_high", "seeds", "lr", "val_mean",
    "diff_vs_lora", "diff_ci95", "trainable_parameters", "step_ms", "peak_memory_mb",
)


def summarize(plan, records: list[dict]) -> list[dict]:
    """One row per method (the plan's order) from the run records."""
    metric, rows = plan.metric, []
    chosen_tests: dict[str, list[float]] = {}
    for method in plan.methods:
        mine = [r for r in records if r["method"] == method]
        if not mine:
            continue  # every run failed: listed under the table
        val = {lr: [r["val"][metric] for r in mine if r["lr"] == lr] for lr in plan.lrs}
        lr = choose_lr({k: v for k, v in val.items() if v}, plan.higher_is_better)
        picked = sorted((r for r in mine if r["lr"] == lr), key=lambda r: r["seed"])
        tests = [r["test"][metric] for r in picked]
        chosen_tests[method] = tests
        ci = t_interval(tests)
        times = [r["step_ms"] for r in picked if r.get("step_ms") is not None]
        mems = [r["peak_memory_mb"] for r in picked if r.get("peak_memory_mb") is not None]
        row = {
            "method": method,
            "metric": metric,
            "mean": ci.mean,
            "ci95_low": ci.low,
            "ci95_high": ci.high,
            "seeds": ci.n,
            "lr": lr,
            "val_mean": statistics.fmean(val[lr]),
            "val_by_lr": {f"{k:g}": statistics.fmean(v) for k, v in val.items() if v},
            "trainable_parameters": picked[0]["trainable_parameters"],
            "step_ms": statistics.median(times) if times else None,
            "peak_memory_mb": statistics.median(mems) if mems else None,
            "test_by_seed": dict(zip([r["seed"] for r in picked], tests, strict=True)),
        }
        for key in plan.extra:
            vals = [r["test"][key] for r in picked if key in r["test"]]
            row[key] = statistics.fmean(vals) if vals else None
        rows.append(row)
    if "lora" in chosen_tests:
        for row in rows:
            d = welch_interval(chosen_tests[row["method"]], chosen_tests["lora"])
            row["diff_vs_lora"], row["diff_ci95"] = d.mean, d.half
    return rows


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown(plan, rows: list[dict], caption: str = "") -> str:
    """The table as Markdown (mean +- half-width; the interval is Student's t over seeds)."""
    arrow = "higher is better" if plan.higher_is_better else "lower is better"
    extra = [f"test {k}" for k in plan.extra]
    head = [
        "method", f"test {plan.metric} (95 % CI)", "vs LoRA (95 % CI)", *extra, "lr (val)",
        "trainable params", "ms/step", "peak MB",
    ]
    lines = [
        f"**{plan.pipeline}**: test {plan.metric} ({arrow}), mean over seeds "
        f"{', '.join(map(str, plan.seeds))} at the lr chosen on validation from "
        f"{', '.join(f'{x:g}' for x in plan.lrs)}. {caption}".rstrip(),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        half = None if r["ci95_low"] is None else r["ci95_high"] - r["mean"]
        diff = "n/a" if r.get("diff_vs_lora") is None else (
            "—" if r["method"] == "lora" else f"{r['diff_vs_lora']:+.4f} ± {_fmt(r['diff_ci95'])}"
        )
        cells = [
            r["method"],
            f"{r['mean']:.4f} ± {_fmt(half)}",
            diff,
            *[_fmt(r.get(k)) for k in plan.extra],
            f"{r['lr']:g}",
            f"{r['trainable_parameters']:,}" if r["trainable_parameters"] is not None else "n/a",
            _fmt(r["step_ms"], 1),
            _fmt(r["peak_memory_mb"], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for f in _failed(plan):
        lines.append(f"\nFailed: {f['method']} lr={f['lr']:g} seed={f['seed']}: {f['error']}")
    return "\n".join(lines) + "\n"


def _failed(plan) -> list[dict]:
    """One failure per method (the first), so a method that fails everywhere is one line."""
    seen, out = set(), []
    for f in plan.failures:
        if f["method"] not in seen:
            seen.add(f["method"])
            out.append(f)
    return out


def to_csv(rows: list[dict], extra: tuple) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*COLUMNS, *extra])
    for r in rows:
        w.writerow([r.get(c) for c in (*COLUMNS, *extra)])
    return buf.getvalue()


def plot(plan, rows: list[dict], path: Path, caption: str = "") -> Path:
    """Test metric vs trainable parameters (log x), one marker per method, 95 % error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = "osD^v<>phX*P"
    for i, r in enumerate(rows):
        if not r["trainable_parameters"]:
            continue  # nothing to place on a log axis
        half = 0.0 if r["ci95_low"] is None else r["ci95_high"] - r["mean"]
        ax.errorbar(
            r["trainable_parameters"], r["mean"], yerr=half, fmt=markers[i % len(markers)],
            capsize=3, label=f"{r['method']} (lr {r['lr']:g})", color=f"C{i % 10}",
        )
        ax.annotate(r["method"], (r["trainable_parameters"], r["mean"]), fontsize=6,
                    xytext=(4, 3), textcoords="offset points", color=f"C{i % 10}")
    lora = next((r for r in rows if r["method"] == "lora"), None)
    if lora is not None and lora["ci95_low"] is not None:
        ax.axhspan(lora["ci95_low"], lora["ci95_high"], color="grey", alpha=0.15, lw=0,
                   label="LoRA 95 % CI")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel(f"test {plan.metric} (mean, 95 % CI over {len(plan.seeds)} seeds)")
    sub = textwrap.fill(f"lr tuned per method on validation{'; ' + caption if caption else ''}", 95)
    ax.set_title(
        f"lorakit compare {plan.pipeline}: test {plan.metric} vs trainable parameters\n{sub}",
        fontsize=8,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_report(plan, records: list[dict], caption: str = "") -> list[dict]:
    """compare.csv / compare.md / compare.png / metrics.json in ``plan.out``; returns rows."""
    rows = summarize(plan, records)
    atomic_write_text(plan.out / "compare.csv", to_csv(rows, plan.extra))
    atomic_write_text(plan.out / "compare.md", markdown(plan, rows, caption))
    plot(plan, rows, plan.out / "compare.png", caption)
    write_json(
        plan.out / "metrics.json",
        {
            "pipeline": plan.pipeline,
            "metric": plan.metric,
            "higher_is_better": plan.higher_is_better,
            "lrs": plan.lrs,
            "seeds": plan.seeds,
            "interval": "95 % Student t over seeds; diff_vs_lora: Welch",
            "lr_choice": "per method, best mean validation metric over seeds",
            "methods": rows,
            "runs": records,
            "failed_runs": plan.failures,
        },
    )
    return rows
