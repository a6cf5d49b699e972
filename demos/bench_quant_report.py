"""bench_quant's tables and goal lines (bench_quant.md), apart from the measuring."""

from __future__ import annotations

import random

from bench_quant_clip import clip_deltas, clip_table

KEYS = ("wer_heldout_child", "wer_heldout_adult")


def paired_delta(row: dict, ref: dict, group: str, draws: int = 2000) -> tuple:
    """WER(row) - WER(ref) on ``group`` and its 95 % paired bootstrap interval over
    sentences (the same utterances decoded by both models, resampled together)."""
    pairs = [
        (a[1], b[1], a[2])
        for a, b in zip(row["errors"], ref["errors"], strict=True)
        if a[0] == group
    ]

    def delta(sample):
        words = max(sum(p[2] for p in sample), 1)
        return (sum(p[0] for p in sample) - sum(p[1] for p in sample)) / words

    rng = random.Random(0)
    boot = sorted(delta(rng.choices(pairs, k=len(pairs))) for _ in range(draws))
    return delta(pairs), boot[int(0.025 * (draws - 1))], boot[int(0.975 * (draws - 1))]


def cell(r: dict, key: str) -> str:
    lo, hi = r[f"{key}_ci"]
    return f"{100 * r[key]:.1f} % [{100 * lo:.1f}, {100 * hi:.1f}]"


def rows_table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | bits | child WER | adult WER | init - plain, child | init - plain, adult | "
        "mean rel. weight error | model bytes (x fp32) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        err = r.get("rel_error_adapted", r.get("rel_error_plain"))
        b = r["bytes"]
        plain = plain_row(rows, r)
        deltas = [delta_cell(r, plain, k) if plain else "-" for k in KEYS]
        lines.append(
            f"| {r['label']} | {r.get('bits_label') or r['bits'] or 32} | {cell(r, KEYS[0])} | "
            f"{cell(r, KEYS[1])} | {deltas[0]} | {deltas[1]} | "
            f"{'-' if err is None else f'{err:.4f}'} | {b['total']:,} ({b['ratio']:.3f}) |"
        )
    return lines


def base_table(base: dict) -> list[str]:
    """The multilingual Whisper base rows (``--only base``), decoded in English."""
    return [
        "",
        f"Whisper base (real multilingual weights, `base-ct2`, decoded in English), the same "
        f"held-out subset ({base['utterances']} utterances), the same decoding and "
        f"quantization (all {base['layers']} block Linears, NF, group 64), no training; "
        f"{base['seconds']} s:",
        "",
        *rows_table(base["rows"]),
    ]


def table(result: dict) -> str:
    rows, train = result["rows"], result["train"]
    lines = [
        f"Whisper tiny.en (real weights), held-out flite set: {result['utterances']} utterances "
        f"({result['sentences']} sentences x adult / child-like), plain greedy decoding (no "
        "temperature fallback, at most 96 tokens), no training; "
        f"quantized: all 64 block Linears (NF, group 64); adapters r={result['rank']} "
        "(QWHA: the same count of coefficients); 95 % bootstrap intervals over sentences; "
        "init - plain: WER points against the plainly quantized model at the same bits, "
        "paired bootstrap over sentences.",
        "",
        *rows_table(rows),
    ]
    q4 = next(r for r in rows if r["bits"] == 4 and r["method"] == "none")
    b = q4["bytes"]
    lines += [
        "",
        f"4-bit: quantized Linear weights {b['quantized_layers']:,} bytes = "
        f"{b['quantized_layers'] / (b['dense_total'] - b['other']):.3f}x their fp32 bytes; "
        f"the whole model {b['ratio']:.3f}x (token embedding, convolutions, norms and "
        "positional tables stay float32).",
    ]
    for r in rows:
        if r.get("notes"):
            lines.append(f"- {r['label']}: {'; '.join(r['notes'])}")
    if train:
        lines += [
            "",
            f"Training step side by side (LoRA r=8 on the same 64 layers, batch "
            f"{train[0]['batch']} of 30 s log-mels, 32 tokens, AdamW, 1 thread, median of "
            f"{train[0]['steps']} steps after one warm-up, each in a fresh process"
            + (f"; {train[0]['malloc']}" if train[0].get("malloc") else "")
            + "; above libraries: peak RSS minus the RSS of the interpreter and torch "
            "before the model is built):",
            "",
            "| base | step time (s) | peak RSS (MB) | peak RSS above libraries (MB) | "
            "RSS growth in training (MB) | autograd-saved activations (MB) | tensors: base + "
            "adapter/grad/AdamW + activations (MB) | model bytes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {t['kind']} | {t['step_seconds']} | {t['peak_rss_mb']} | "
            f"{t.get('peak_above_libs_mb', '-')} | {t['peak_growth_mb']} | "
            f"{t['saved_activation_mb']} | {t['tensor_mb']} | {t['model_bytes']:,} |"
            for t in train
        ]
        if len(train) == 2:
            fp_t, q_t = train
            lines += [
                "",
                f"The 4-bit base holds {(fp_t['model_bytes'] - q_t['model_bytes']) / 2**20:.0f} "
                f"MB less weight; the autograd-saved activations ({q_t['saved_activation_mb']} "
                f"vs {fp_t['saved_activation_mb']} MB: the quantized layers save no weight "
                "copy) and the float32 token embedding are what remain, so at this model size "
                "and batch they, not the Linear weights, set the peak.",
            ]
    if result.get("base"):
        lines += base_table(result["base"])
    if result.get("clip"):
        lines += clip_table(result["clip"])
    lines += ["", *(f"- {k}: {v}" for k, v in goals(rows, train).items())]
    if result.get("clip"):
        lines += [f"- {k}: {v}" for k, v in clip_deltas(result["clip"]).items()]
    return "\n".join(lines)


def plain_row(rows: list[dict], r: dict) -> dict | None:
    """The plainly quantized row at ``r``'s bits (None for fp32 and plain rows)."""
    if r["method"] == "none" or "ILP" in r["label"]:
        return None
    return next(p for p in rows if p["bits"] == r["bits"] and p["method"] == "none")


def delta_cell(r: dict, plain: dict, key: str) -> str:
    d, lo, hi = (100 * v for v in paired_delta(r, plain, key.removeprefix("wer_")))
    return f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def gains(rows: list[dict]) -> dict:
    """Per init and bits: does it lower WER against plain quantization (interval < 0)?"""
    out = {}
    for r in rows:
        plain = plain_row(rows, r)
        if plain is None:
            continue
        verdicts = []
        for k in KEYS:
            d, lo, hi = paired_delta(r, plain, k.removeprefix("wer_"))
            word = "gain" if hi < 0 else "worse" if lo > 0 else "no significant change"
            verdicts.append(f"{k.split('_')[-1]} {100 * d:+.1f} points ({word})")
        out[f"{r['label']} vs plain {r['bits']}-bit"] = "; ".join(verdicts)
    return out


def goals(rows: list[dict], train: list[dict]) -> dict:
    def find(bits, method):
        return next(
            (
                r
                for r in rows
                if r["bits"] == bits and r["method"] == method and "ILP" not in r["label"]
            ),
            None,
        )

    fp, out = rows[0], {}
    q4 = find(4, "none")["bytes"]
    ratio = q4["quantized_layers"] / (q4["dense_total"] - q4["other"])
    out["4-bit quantized weights <= 0.15x fp32"] = (
        f"{'pass' if ratio <= 0.15 else 'MISS'} ({ratio:.3f}x; whole model {q4['ratio']:.3f}x)"
    )
    gaps = {m: [100 * (find(4, m)[k] - fp[k]) for k in KEYS] for m in ("lq_lora", "qwha")}
    ok = any(max(g) <= 1.0 for g in gaps.values())
    out["4-bit WER (child and adult) within 1 point of fp32 after LQ-LoRA or QWHA init"] = (
        f"{'pass' if ok else 'MISS'} ("
        + ", ".join(f"{m}: child {g[0]:+.1f}, adult {g[1]:+.1f} points" for m, g in gaps.items())
        + ")"
    )
    for bits in (3, 2):
        q, lq = find(bits, "qwha"), find(bits, "loftq")
        if q and lq:
            better = all(q[k] <= lq[k] for k in KEYS)
            out[f"{bits}-bit QWHA init recovers more than LoftQ (both groups)"] = (
                f"{'pass' if better else 'MISS'} (child {100 * q[KEYS[0]]:.1f} vs "
                f"{100 * lq[KEYS[0]]:.1f}, adult {100 * q[KEYS[1]]:.1f} vs {100 * lq[KEYS[1]]:.1f})"
            )
    if len(train) == 2:
        fp_t, q_t = train
        mem = q_t["peak_rss_mb"] / fp_t["peak_rss_mb"]
        ten = q_t["tensor_mb"] / fp_t["tensor_mb"]
        above = ""
        if "peak_above_libs_mb" in q_t:
            above = f", {q_t['peak_above_libs_mb'] / fp_t['peak_above_libs_mb']:.2f}x above libraries"
        out["4-bit training peak memory <= 0.5x fp32 LoRA"] = (
            f"{'pass' if mem <= 0.5 else 'MISS'} ({mem:.2f}x peak RSS{above}, "
            f"{ten:.2f}x tensor bytes)"
        )
        tt = q_t["step_seconds"] / fp_t["step_seconds"]
        out["4-bit training step time <= 1.5x fp32 LoRA"] = (
            f"{'pass' if tt <= 1.5 else 'MISS'} ({tt:.2f}x)"
        )
    return out | gains(rows)
