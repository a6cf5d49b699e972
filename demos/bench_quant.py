"""Benchmark: real Whisper tiny.en on a quantized base (4, 3, 2 bits), no training.

    .venv/bin/python demos/bench_quant.py --out demos/results --sentences 8 --budget 0 \
        --train-steps 2 --batch 2     # the size of demos/results/bench_quant.md

One run, on the project's held-out set (flite voices; the first ``--sentences`` sentences,
each spoken by an adult and a child-like voice): greedy WER with 95 % bootstrap intervals
over sentences for the float32 model, the plainly quantized model (NF, group 64, all 64
Linear layers of encoder and decoder) and the model right after each quantization-aware
initialisation (LoftQ-style, LQ-LoRA, QWHA: same trainable count, ``r * (d_in + d_out)``
per layer), which absorb the quantization error without any data. Adapters are merged
into a float copy for decoding (same function, float speed). Also LQ-LoRA with its ILP
bit allocation at an average budget; model bytes; and one training step side by side
(fp32 LoRA vs 4-bit QLoRA, same batch: step time and peak resident memory, each in a
fresh process). The CLIP stand-in's zero-shot and few-shot accuracy at fp32 / 4 / 3 / 2
bits (``bench_quant_clip.py``; ``--only clip`` reruns just that part, ``--only train`` just
the training step). Writes bench_quant.json and bench_quant.md into --out.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import threading
import time
from pathlib import Path

import torch
from bench_quant_clip import clip_deltas, clip_rows
from bench_quant_report import KEYS, goals, table

from lorakit.core import (
    inject,
    make_config,
    merge,
    model_bytes,
    quantize,
    trainable_parameters,
)
from lorakit.data.heldout import generate_heldout
from lorakit.data.worker_pool import worker_pool
from lorakit.speech.whisper.build import load_whisper
from lorakit.speech.whisper.evaluate import score, transcribe_utterances
from lorakit.speech.whisper.pipeline import evaluate_utterances, summaries
from lorakit.speech.whisper.transcribe import DecodeConfig

TARGETS = ("whisper-attn", "whisper-mlp")  # every Linear of encoder and decoder blocks
METHODS = ("loftq", "lq_lora", "qwha")
MMAP_THRESHOLD = 1 << 17  # bytes: glibc's default start value, kept fixed in training runs


def held_out(args) -> list:
    manifest = generate_heldout(args.data)
    utts = evaluate_utterances({"heldout": manifest, "test": None}, ("heldout",))
    keep = {u.text for u in utts[::2][: args.sentences]}  # adult and child of each sentence
    return [u for u in utts if u.text in keep]


def wer(model, utts) -> dict:
    start = time.time()
    hyps = transcribe_utterances(model, utts, DecodeConfig(fallback=False))  # plain greedy
    rows = score(utts, hyps)
    out = summaries(rows)
    keep = {k: out[k] for k in KEYS} | {f"{k}_ci": out[f"{k}_ci"] for k in KEYS}
    errors = [[r.utt.group, r.word_errors, r.ref_words] for r in rows]
    return keep | {"eval_seconds": round(time.time() - start, 1), "errors": errors}


def mean(xs) -> float:
    return round(sum(xs) / max(len(xs), 1), 4)


def evaluate(label: str, bits: int | None, method: str | None, args, budget=None) -> dict:
    """One row: build, quantize (and absorb), merge, decode the held-out subset."""
    torch.set_num_threads(1)
    model = load_whisper(getattr(args, "model", None))
    row = {"label": label, "bits": bits, "method": method or "none"}
    start = time.time()
    if bits is not None:
        cfg = None
        if method:
            hyper = {"r": args.rank, "targets": TARGETS}
            if budget is not None:
                hyper.update(budget_bits=budget, candidate_bits=(2, 3, 4, 8))
            cfg = make_config(method, **hyper)
        rep = quantize(model, bits=bits, group_size=64, targets=TARGETS, adapter=cfg)
        row["bytes"] = model_bytes(model)
        row["rel_error_plain"] = mean([q.rel_error for q in rep.layers])
        if method:
            row["rel_error_adapted"] = mean([q.rel_error_adapted for q in rep.layers])
            row["trainable"] = rep.adapter.trainable
            row["layer_bits"] = sorted(q.bits for q in rep.layers)
            if budget is not None:
                row["bits_label"] = (
                    f"{budget} (mixed {min(row['layer_bits'])}-{max(row['layer_bits'])})"
                )
            row["notes"] = rep.notes
            merge(model)  # a float copy W_hat + dW per layer: same function, float speed
    else:
        row["bytes"] = model_bytes(model)
    row["init_seconds"] = round(time.time() - start, 1)
    row.update(wer(model, args.utts))
    print(f"{label}: {row[KEYS[0]]:.3f} / {row[KEYS[1]]:.3f} ({row['eval_seconds']} s)", flush=True)
    return row


def trim() -> None:
    """Free garbage and hand freed heap pages back (the fp32 weights ``quantize`` replaced),
    so resident memory counts what the process still holds."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def train_steps(kind: str, steps: int, batch: int) -> dict:
    """``steps`` optimizer steps of LoRA r=8 on every block Linear, fp32 base or 4-bit NF
    base (QLoRA), on one fixed batch; step time and the peak resident memory while
    training (sampled every 2 ms), in its own process."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    libs = rss()  # the interpreter and the imported libraries, before any model
    model = load_whisper()
    if kind == "qlora":
        quantize(model, bits=4, group_size=64, targets=TARGETS)
    inject(
        model, make_config("qlora" if kind == "qlora" else "lora", r=8, alpha=16.0, targets=TARGETS)
    )
    params = trainable_parameters(model)
    opt = torch.optim.AdamW(params, lr=1e-4)
    trim()
    mel = torch.randn(batch, 80, 3000)  # shapes of real 30 s inputs; values do not matter
    tokens = torch.randint(0, 50000, (batch, 32))
    model.train()
    base, peak, times = rss(), [0], []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    saved: dict[int, int] = {}  # storages autograd holds for the backward pass
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]
           if not t.is_sparse}

    def pack(t):  # activations only: the model's own tensors are counted in model bytes
        if t.untyped_storage().data_ptr() not in own:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    for _ in range(steps + 1):
        start = time.perf_counter()
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logits = model(mel, tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    stop.set()
    t.join()
    adapter = 4 * sum(p.numel() for p in params)  # fp32: weight, grad, two AdamW moments
    tensors = model_bytes(model)["total"] + 4 * adapter + sum(saved.values())
    return {
        "saved_activation_mb": round(sum(saved.values()) / 2**20, 1),
        "tensor_mb": round(tensors / 2**20, 1),
        "kind": kind,
        "steps": steps,
        "batch": batch,
        "step_seconds": round(statistics.median(times[1:]), 3),
        "peak_rss_mb": round(max(peak[0], rss()) / 2**20, 1),
        "rss_before_mb": round(base / 2**20, 1),
        "rss_libs_mb": round(libs / 2**20, 1),
        "peak_above_libs_mb": round((max(peak[0], rss()) - libs) / 2**20, 1),
        "peak_growth_mb": round((max(peak[0], rss()) - base) / 2**20, 1),
        "model_bytes": model_bytes(model)["total"],
    }



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_quant"))
    ap.add_argument("--data", type=Path, default=Path("cache/asr-heldout"))
    ap.add_argument("--sentences", type=int, default=24)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 3, 2])
    ap.add_argument("--budget", type=float, default=3.0, help="LQ-LoRA ILP bits/weight (0: skip)")
    ap.add_argument("--train-steps", type=int, default=3, help="0: skip the training comparison")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite bench_quant.md from --out's bench_quant.json",
    )
    ap.add_argument(
        "--only",
        choices=("all", "train", "clip", "base"),
        default="all",
        help="train / clip / base: rerun only the training-step comparison / the CLIP "
        "stand-in rows / the Whisper base rows (no training), keeping --out's other results",
    )
    ap.add_argument("--clip-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--clip-steps", type=int, default=80)
    ap.add_argument("--clip-shots", type=int, default=4)
    ap.add_argument("--clip-lr", type=float, default=1e-2, help="bench_clip's choice for lora")
    ap.add_argument("--train-asr", type=int, default=0, metavar="STEPS",
                    help="first, the recipe's training on each base (demos/quant_asr_train.py)")
    args = ap.parse_args()
    if args.train_asr:  # same --out and held-out subset; with --report-only, only this
        import quant_asr_train as qt

        qt.main(qt.parser().parse_args(["--out", str(args.out), "--sentences",
                                        str(args.sentences), "--steps", str(args.train_asr)]))
    if args.report_only:
        return report(json.loads((args.out / "bench_quant.json").read_text()), args.out)
    if args.only != "all":
        result = json.loads((args.out / "bench_quant.json").read_text())
        if args.only == "train":
            result["train"] = train_comparison(args)
        elif args.only == "base":
            result["base"] = base_rows(args)
        else:
            result["clip"] = clip_rows(args)
        return report(result, args.out)
    start = time.time()
    args.utts = held_out(args)
    jobs = [("float32", None, None, None)]
    for bits in args.bits:
        jobs.append((f"{bits}-bit", bits, None, None))
        jobs += [(f"{bits}-bit + {m} init", bits, m, None) for m in METHODS]
    if args.budget:
        jobs.append((f"LQ-LoRA ILP {args.budget} bits/weight", 4, "lq_lora", args.budget))
    with worker_pool(args.workers) as pool:
        futures = [pool.submit(evaluate, label, b, m, args, budget) for label, b, m, budget in jobs]
        rows = [f.result() for f in futures]
    train = train_comparison(args)
    clip = clip_rows(args)
    result = {
        "utterances": len(args.utts),
        "sentences": args.sentences,
        "rank": args.rank,
        "rows": rows,
        "train": train,
        "clip": clip,
        "seconds": round(time.time() - start),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_quant.json").write_text(json.dumps(result, indent=2))
    report(result, args.out)


def base_rows(args) -> dict:
    """Whisper base at fp32 / 4 / 3 / 2 bits and after LoftQ and QWHA's 4-bit init (LQ-LoRA's
    iterated init is left out: on tiny.en it took 4 minutes a layer set, ~5x that here)."""
    start = time.time()
    args.utts, args.model = held_out(args), "base-ct2"
    jobs = [("float32", None, None), ("4-bit", 4, None), ("4-bit + loftq init", 4, "loftq"),
            ("4-bit + qwha init", 4, "qwha"), ("3-bit", 3, None), ("2-bit", 2, None)]  # fmt: skip
    with worker_pool(args.workers) as pool:
        futures = [pool.submit(evaluate, label, b, m, args) for label, b, m in jobs]
        rows = [f.result() for f in futures]
    layers = sum(1 for n, m in load_whisper("base-ct2").named_modules()
                 if isinstance(m, torch.nn.Linear) and ".blocks." in n)  # fmt: skip
    return {"utterances": len(args.utts), "rows": rows, "layers": layers,
            "seconds": round(time.time() - start)}  # fmt: skip


def train_comparison(args) -> list[dict]:
    """fp32 LoRA, then 4-bit QLoRA, each in a fresh process. glibc's malloc gets a fixed
    mmap threshold (``MALLOC_MMAP_THRESHOLD_``, the same for both) so a freed large block
    goes back to the system at once and resident memory tracks the live tensors rather than
    how each run's temporaries happened to fragment the heap."""
    train = []
    env = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for kind in ("lora", "qlora") if args.train_steps else ():  # one after the other
            with worker_pool(1) as pool:
                row = pool.submit(train_steps, kind, args.train_steps, args.batch).result()
            row["malloc"] = f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}"
            train.append(row)
            print(row, flush=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return train


def report(result: dict, out: Path) -> None:
    """Goals into the json, the table into bench_quant.md."""
    result["goals"] = goals(result["rows"], result["train"])
    if result.get("clip"):
        result["goals"] |= clip_deltas(result["clip"])
    (out / "bench_quant.json").write_text(json.dumps(result, indent=2))
    text = table(result)
    print(text)
    (out / "bench_quant.md").write_text(text + "\n")
    print(f"wrote {out / 'bench_quant.json'} and bench_quant.md")


if __name__ == "__main__":
    main()
