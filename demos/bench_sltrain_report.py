"""bench_sltrain's report: the markdown tables and the plot (bench_sltrain.md / .png)."""

from __future__ import annotations

from pathlib import Path


def kib(b: int) -> str:
    return f"{b / 1024:,.0f}"


def block_markdown(rows: dict) -> str:
    lines = [
        "",
        "### one ViT-B/16-sized MLP block (768 -> 3072 -> 768), 8 x 197 tokens, memory and "
        "step time only",
        "",
        "| variant | trainable | layer weights | grads + AdamW | saved for backward | total | "
        "ms / step |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, row in rows.items():
        m = row["memory"]
        lines.append(
            f"| {v} | {m['trainable']:,} | {kib(m['layer_weights'])} | {kib(m['grads_adamw'])} "
            f"| {kib(m['saved'])} | {kib(m['total'])} | {row['step_ms']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def markdown(results: dict, args) -> str:
    lines = [
        f"## SLTrain's memory: B A + S against LoRA and full fine-tuning ({args.steps} steps, "
        f"batch {args.batch_size}, {len(args.seeds)} seeds, 95 % t-interval, one CPU thread)",
        "",
        "Memory in KiB, counted: the trained layers' tensors (frozen dense weights included), "
        "their gradients and AdamW moments, and what autograd saves for backward in one step. "
        "Time to the common accuracy: the first evaluated step at which the validation "
        "accuracy reaches the lowest of the variants' final mean validation accuracies, "
        "times the median step time (reached: seeds that got there).",
    ]
    for name, res in results.items():
        ood = "ood" in next(iter(res["rows"].values()))
        pre = res["pretrained"]
        lines += [
            "",
            f"### {name} (common validation accuracy {100 * res['target_val']:.1f} %)",
            "",
            f"The pretrained model before fine-tuning: test {100 * pre['test']:.1f} %"
            + (f", OOD {100 * pre['ood']:.1f} %" if ood else "")
            + f". sltrain_full at its start (SVD init, before any step): test "
            f"{100 * pre['replaced_test']:.1f} %, relative error of the replaced weights "
            f"{pre['init_error']:.3f} (mean over layers).",
            "",
            "| variant | lr | trainable | layer weights | grads + AdamW | saved for backward "
            f"| total | ms / step | test acc. %{' | OOD acc. %' if ood else ''} "
            "| s to common acc. (reached) |",
            "|---|---|---|---|---|---|---|---|---|" + ("---|" if ood else "") + "---|",
        ]
        for v, row in res["rows"].items():
            m = row["memory"]
            acc = f"{100 * row['test']:.1f} ± {100 * row['test_ci']:.1f}"
            o = f" {100 * row['ood']:.1f} ± {100 * row['ood_ci']:.1f} |" if ood else ""
            t = row["seconds_to_target"]
            reach = (f"{t:.2f}" if t is not None else "never") + f" ({row['reached']})"
            lines.append(
                f"| {v} | {row['lr']:g} | {m['trainable']:,} | {kib(m['layer_weights'])} | "
                f"{kib(m['grads_adamw'])} | {kib(m['saved'])} | {kib(m['total'])} | "
                f"{row['step_ms']:.1f} | {acc} |{o} {reach} |"
            )
    return "\n".join(lines) + "\n"


COLOURS = {"full": "C0", "lora": "C1", "sltrain": "C2", "sltrain_full": "C3"}
OFFSETS = {"full": (6, 4), "lora": (-60, 10), "sltrain": (6, -22), "sltrain_full": (6, 4)}


def plot(results: dict, block: dict, path: Path) -> None:
    """Test accuracy against counted memory per example; the block's memory by part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results) + bool(block)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.3), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items(), strict=False):
        for v, row in res["rows"].items():
            x, y = row["memory"]["total"] / 1024, 100 * row["test"]
            ax.errorbar(x, y, yerr=100 * row["test_ci"], fmt="o", capsize=3, color=COLOURS[v])
            ax.annotate(
                f"{v}\n{row['step_ms']:.0f} ms/step",
                (x, y),
                textcoords="offset points",
                xytext=OFFSETS[v],
                fontsize=8,
                color=COLOURS[v],
            )
        ax.axhline(100 * res["pretrained"]["test"], ls=":", color="grey", lw=1)
        ax.set_title(f"{name}: test accuracy (mean, 95 % CI) vs memory", fontsize=10)
        ax.set_xlabel("training memory, counted (KiB)")
        ax.set_ylabel("test accuracy (%); dotted: before fine-tuning")
        ax.margins(x=0.3, y=0.15)
        ax.grid(alpha=0.3)
    if block:
        ax = axes[0][-1]
        parts = [
            ("layer_weights", "layer weights"),
            ("grads_adamw", "grads + AdamW"),
            ("saved", "saved for backward"),
        ]
        names = list(block)
        left = [0.0] * len(names)
        for (key, label), colour in zip(parts, ("C7", "C9", "C8"), strict=True):
            vals = [block[v]["memory"][key] / 2**20 for v in names]
            ax.barh(names, vals, left=left, label=label, color=colour)
            left = [a + b for a, b in zip(left, vals, strict=True)]
        for i, v in enumerate(names):
            ax.text(left[i] + 1, i, f"{block[v]['step_ms']:.0f} ms/step", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(left) * 1.35)
        ax.set_xlabel("training memory, counted (MiB)")
        ax.set_title("ViT-B/16-sized MLP block, 8 x 197 tokens", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
