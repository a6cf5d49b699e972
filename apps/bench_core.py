"""``lorakit bench core``: each method's training step time against Hugging Face PEFT's LoRA.

Models (random weights, built in-process): a ViT-B/16-sized open_clip vision tower
(``nn.MultiheadAttention`` blocks; q/k/v/o adapted, as PEFT does for attention) and a
Whisper-tiny-sized model (query/key/value/out Linears). For each, all variants live in
one process and are timed round-robin, so machine noise hits every variant alike; the
table reports medians and ratios to PEFT LoRA at the same rank. Memory is measured
deterministically: bytes of tensors autograd saves for backward, plus trainable
parameters with their Adam state.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lorakit.core import inject, make_config, merge

RANK = 8
OURS = ("lora", "block_lora", "comp_lora", "s2_lora", "largo")


def vit_b16(
    image: int,
) -> tuple[nn.Module, Callable[[int], torch.Tensor], tuple[str, ...], tuple[str, ...]]:
    from open_clip.transformer import VisionTransformer

    model = VisionTransformer(
        image_size=image,
        patch_size=16,
        width=768,
        layers=12,
        heads=12,
        mlp_ratio=4.0,
        output_dim=512,
    )
    return (
        model,
        lambda b: torch.randn(b, 3, image, image),
        (r"transformer\.resblocks\.\d+\.attn",),
        ("attn",),
    )


def whisper_tiny() -> tuple[
    nn.Module, Callable[[int], torch.Tensor], tuple[str, ...], tuple[str, ...]
]:
    from whisper.model import AudioEncoder

    enc = AudioEncoder(n_mels=80, n_ctx=1500, n_state=384, n_head=6, n_layer=4)
    targets = (r"blocks\.\d+\.attn\.(query|key|value|out)",)
    return enc, lambda b: torch.randn(b, 80, 3000), targets, ("query", "key", "value", "out")


def peft_lora(model: nn.Module, peft_targets: tuple[str, ...]) -> nn.Module:
    import peft

    cfg = peft.LoraConfig(
        r=RANK, lora_alpha=RANK, target_modules=list(peft_targets), lora_dropout=0.0
    )
    return peft.get_peft_model(model, cfg)


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    (out[0] if isinstance(out, tuple) else out).float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return total


def step_fn(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4) if params else None

    def step():
        out = model(x)
        loss = (out[0] if isinstance(out, tuple) else out).float().pow(2).mean()
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return step


def time_round_robin(
    fns: dict[str, Callable[[], None]], rounds: int, warmup: int = 1
) -> dict[str, float]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def bench_model(name: str, build, batch: int, rounds: int, echo=print) -> list[dict]:
    torch.manual_seed(0)
    base, make_x, targets, peft_targets = build()
    base.eval()
    x = make_x(batch)
    variants: dict[str, nn.Module] = {"peft_lora": peft_lora(copy.deepcopy(base), peft_targets)}
    slices = ("q", "k", "v", "o")
    for method in OURS:
        m = copy.deepcopy(base)
        hyper = {"r": RANK, "alpha": float(RANK), "targets": targets, "slices": slices}
        if method == "comp_lora":
            hyper["k"] = 64  # a fixed protected rank keeps set-up fast on 768-wide layers
        inject(m, make_config(method, **hyper))
        variants[method] = m
    echo(f"[{name}] timing training steps, {rounds} rounds round-robin, batch {batch}")
    train = time_round_robin({k: step_fn(v, x) for k, v in variants.items()}, rounds)
    rows = []
    for k, v in variants.items():
        n_train = sum(p.numel() for p in v.parameters() if p.requires_grad)
        rows.append(
            {
                "model": name,
                "variant": k,
                "step_s": train[k],
                "vs_peft_lora": train[k] / train["peft_lora"],
                "trainable": n_train,
                "train_mem_mb": (saved_bytes(v, x) + 3 * 4 * n_train) / 2**20,
            }
        )
    echo(f"[{name}] timing merged inference against the base model")
    merged = copy.deepcopy(variants["lora"])
    merge(merged)
    with torch.no_grad():
        infer = time_round_robin({"base": lambda: base(x), "merged": lambda: merged(x)}, rounds)
    rows.append(
        {
            "model": name,
            "variant": "merged_lora_inference",
            "step_s": infer["merged"],
            "vs_base": infer["merged"] / infer["base"],
            "trainable": 0,
        }
    )
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        f"{'model':<14}{'variant':<24}{'step s':>9}{'ratio':>8}{'trainable':>12}{'train MB':>10}"
    ]
    for r in rows:
        ratio = r.get("vs_peft_lora", r.get("vs_base"))
        mem = f"{r['train_mem_mb']:.0f}" if "train_mem_mb" in r else "-"
        lines.append(
            f"{r['model']:<14}{r['variant']:<24}{r['step_s']:>9.3f}{ratio:>8.2f}{r['trainable']:>12,}{mem:>10}"
        )
    return "\n".join(lines)


def run(out: Path, rounds: int = 5, image: int = 224, batch: int = 2, echo=print) -> list[dict]:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = bench_model("vit_b16", lambda: vit_b16(image), batch, rounds, echo)
    rows += bench_model("whisper_tiny", whisper_tiny, 1, rounds, echo)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_core.json").write_text(json.dumps(rows, indent=2))
    table = format_table(rows)
    (out / "bench_core.txt").write_text(table + "\n")
    echo(table)
    return rows
