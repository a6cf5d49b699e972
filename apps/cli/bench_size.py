"""``lorakit bench size``: one training step of each pipeline's real-size model, with and
without activation checkpointing, next to Hugging Face PEFT LoRA.

Models (random weights, the real architectures; ``--tiny`` builds the same classes at a
tiny size, for a quick check of the command):

    clip     open_clip ViT-B-16's image tower (224 px); LoRA on every block's attention
             (``nn.MultiheadAttention``: q, k, v and the output projection; PEFT adapts
             the packed q/k/v projection with one pair, lorakit each slice with its own,
             so lorakit trains 8 r d per block against PEFT's 6 r d)
    sam      SAM vit_b's image encoder at 1024 px; LoRA on every block's ``qkv`` Linear
             (adapted whole, as PEFT does, not as three slices)
    vit      torchvision ``vit_b_16`` (224 px, the OOD pipeline's); LoRA on every MLP
             (``mlp.0``, ``mlp.3``)
    whisper  Whisper base (``base-ct2``, the ``whisper-base`` extra; 30 s of mel frames and
             32 tokens); LoRA on query/key/value/out of every encoder and decoder attention

Variants, each measured in its own fresh process (``python -m lorakit.apps.cli.bench_size
--one ...``), one after another in one run: ``lorakit`` (``inject`` LoRA), ``lorakit+ckpt``
(and ``checkpoint_blocks``), ``peft`` (``peft.get_peft_model`` with LoRA on the same layers,
rank and alpha), ``peft+ckpt`` (lorakit's ``checkpoint_blocks`` on the PEFT model: its
blocks are the same classes). A step is forward, a loss on the output, backward and AdamW
over the trainable tensors. Memory is the step's peak above what the process held when
training began: CPU peak resident set (VmHWM, reset through ``/proc/self/clear_refs`` after
``malloc_trim``), CUDA ``max_memory_allocated``; so AdamW's state, the gradients and the
activations count, the frozen weights do not. Step time: the median of the steps after the
first (the first step alone when ``--steps 1``: it includes allocating AdamW's state).

On the CPU each measuring process runs with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at
128 KiB (``MMAP_THRESHOLD``), so every large tensor is its own mapping, handed back when it
is freed: the peak resident set then follows what the step allocates. With glibc's default
(a threshold that grows as large blocks are freed; ``--malloc-default``) freed blocks stay
in the heap and the peak depends on the order of allocations: the ViT-B-16 image tower at
batch 8 with checkpointing measured 883 MB (lorakit) and 505 MB (PEFT) that way, against
175 and 185 MB with the fixed threshold, while the tensors alive at the peak were the same.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

MODELS = ("clip", "sam", "vit", "whisper")
VARIANTS = ("lorakit", "lorakit+ckpt", "peft", "peft+ckpt")
DEFAULT_BATCH = {"clip": 8, "sam": 1, "vit": 8, "whisper": 4}
EXTRA = 'pip install "lorakit[bench]"'
MMAP_THRESHOLD = 128 * 1024  # bytes; glibc's MALLOC_MMAP_THRESHOLD_ in the measuring process
LABELS = {
    "clip": "open_clip ViT-B-16 image tower, 224 px, LoRA on attention q/k/v/o",
    "sam": "SAM vit_b image encoder, 1024 px, LoRA on qkv",
    "vit": "torchvision vit_b_16, 224 px, LoRA on MLP",
    "whisper": "Whisper base, 30 s audio + 32 tokens, LoRA on attention q/k/v/out",
}


@dataclass
class Setup:
    """A model to train, its input for a batch, the loss on its output, the layers to adapt
    (full module names, given to both libraries) and lorakit's slices for attention."""

    model: nn.Module
    make_input: Callable[[int], tuple]
    loss: Callable[[object], torch.Tensor]
    names: list[str]
    slices: tuple[str, ...] = ("q",)
    fused: dict | None = None  # None: lorakit's default (``qkv`` as three slices)


def _square(out) -> torch.Tensor:
    return out.float().square().mean()


def _names(model: nn.Module, keep: Callable[[str, nn.Module], bool]) -> list[str]:
    return [n for n, m in model.named_modules() if n and keep(n, m)]


def build_clip(tiny: bool) -> Setup:
    import open_clip

    if tiny:
        from lorakit.vision.clip.build import BackboneConfig, load_backbone

        bb = load_backbone(BackboneConfig(name="lorakit-tiny-vit", pretrained=None))
        visual, size = bb.model.visual, bb.image_size
    else:
        visual, size = open_clip.create_model("ViT-B-16", pretrained=None).visual, 224
    names = _names(visual, lambda n, m: isinstance(m, nn.MultiheadAttention))
    return Setup(
        visual,
        lambda b: (torch.rand(b, 3, size, size),),
        _square,
        names,
        ("q", "k", "v", "o"),
    )


def build_sam(tiny: bool) -> Setup:
    from segment_anything import sam_model_registry

    if tiny:
        from lorakit.vision.sam.build import BackboneConfig, random_tiny

        enc = random_tiny(BackboneConfig(img_size=64, window=2, depth=2)).image_encoder
    else:
        enc = sam_model_registry["vit_b"]().image_encoder
    size = enc.img_size
    names = _names(enc, lambda n, m: n.endswith("attn.qkv"))
    # fused={}: the qkv Linear adapted whole by one A, B pair, as PEFT does
    return Setup(enc, lambda b: (torch.rand(b, 3, size, size),), _square, names, fused={})


def build_vit(tiny: bool) -> Setup:
    import torchvision

    if tiny:
        from lorakit.vision.ood.build import BackboneConfig
        from lorakit.vision.ood.tiny import tiny_vit

        net = tiny_vit(BackboneConfig(image_size=16, patch_size=8, width=32, depth=2, heads=2), 10)
    else:
        net = torchvision.models.vit_b_16(weights=None)
    size = net.image_size
    names = _names(net, lambda n, m: n.endswith(("mlp.0", "mlp.3")))
    return Setup(
        net, lambda b: (torch.rand(b, 3, size, size),), lambda out: out.logsumexp(-1).mean(), names
    )


# Whisper base's architecture (openai-whisper's ``base``): random weights of it stand in
# where the ``whisper-base`` extra is not installed (a GPU machine with no package index).
BASE_DIMS = dict(
    n_mels=80, n_vocab=51865, n_audio_ctx=1500, n_audio_state=512, n_audio_head=8,
    n_audio_layer=6, n_text_ctx=448, n_text_state=512, n_text_head=8, n_text_layer=6,
)  # fmt: skip


def _whisper_base(load_whisper, tiny_whisper):
    """The real Whisper base from the extra; else random weights of its architecture (the
    step's time and memory do not depend on the values). ``WEIGHTS`` records which."""
    try:
        model = load_whisper("base-ct2")
        WEIGHTS["whisper"] = "base-ct2 (real weights)"
    except ValueError as e:  # the extra is missing: its one line says so
        print(f"bench size: {e}; measuring random weights of Whisper base", file=sys.stderr)
        model = tiny_whisper(BASE_DIMS)
        WEIGHTS["whisper"] = "random (Whisper base dims; extra not installed)"
    return model


WEIGHTS: dict[str, str] = {}


def build_whisper(tiny: bool) -> Setup:
    from lorakit.speech.whisper.build import load_whisper, n_frames, tiny_whisper

    model = tiny_whisper() if tiny else _whisper_base(load_whisper, tiny_whisper)
    frames, n_tokens = n_frames(model), 8 if tiny else 32

    def make_input(b: int) -> tuple:
        tokens = torch.randint(
            0, model.dims.n_vocab, (b, n_tokens), generator=torch.Generator().manual_seed(0)
        )
        return torch.randn(b, model.dims.n_mels, frames), tokens

    def keep(name: str, _m) -> bool:
        parts = name.split(".")
        return parts[-1] in ("query", "key", "value", "out") and parts[-2] in ("attn", "cross_attn")

    names = _names(model, keep)
    return Setup(model, make_input, lambda out: out.float().logsumexp(-1).mean(), names)


BUILDERS = {"clip": build_clip, "sam": build_sam, "vit": build_vit, "whisper": build_whisper}


def peft_available() -> bool:
    return importlib.util.find_spec("peft") is not None


def adapt(setup: Setup, variant: str, rank: int) -> tuple[nn.Module, int]:
    """LoRA (rank ``rank``, alpha = rank) by lorakit or PEFT on ``setup.names``, blocks
    checkpointed for ``+ckpt``; returns the model and how many blocks are checkpointed."""
    from lorakit.core import inject, make_config
    from lorakit.core.checkpointing import checkpoint_blocks

    model = setup.model
    for p in model.parameters():
        p.requires_grad_(False)
    if variant.startswith("peft"):
        import peft

        cfg = peft.LoraConfig(
            r=rank, lora_alpha=rank, target_modules=list(setup.names), lora_dropout=0.0
        )
        model = peft.get_peft_model(model, cfg)
    else:
        fused = {} if setup.fused is None else {"fused": setup.fused}
        inject(
            model,
            make_config("lora", r=rank, alpha=float(rank), slices=setup.slices, **fused),
            names=setup.names,
        )
    blocks = checkpoint_blocks(model) if variant.endswith("+ckpt") else 0
    return model, blocks


PRECISIONS = ("32", "bf16-mixed")


def _start_peak(device: str) -> tuple[str, int]:
    """Reset the peak counter; returns (what is measured, bytes held now)."""
    from lorakit.data.runtime.compare_probe import _reset_hwm, _status_kb, _trim_heap

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda max_memory_allocated", torch.cuda.memory_allocated(device)
    _trim_heap()
    kind = "cpu peak RSS (VmHWM)" if _reset_hwm() else "cpu peak RSS (ru_maxrss)"
    return kind, (_status_kb("VmRSS") or 0) * 1024


def _peak_since(device: str, kind: str, base: int) -> int:
    """Bytes of the peak above ``base`` (from ``_start_peak``)."""
    from lorakit.data.runtime.compare_probe import _status_kb

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) - base
    if kind.endswith("(VmHWM)"):
        return (_status_kb("VmHWM") or 0) * 1024 - base
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base


def measure(
    model_name: str,
    variant: str,
    batch: int,
    steps: int,
    rank: int,
    tiny: bool,
    device: str,
    precision: str = "32",
) -> dict:
    """One variant in this process: build, adapt, train ``steps`` steps; time and peak.
    ``precision="bf16-mixed"``: the forward pass under ``torch.autocast`` in bfloat16 (as
    Lightning's ``bf16-mixed``); weights, gradients and AdamW's state stay float32."""
    torch.manual_seed(0)
    setup = BUILDERS[model_name](tiny)
    setup.model.to(device).eval()  # frozen backbone: dropout and norms in eval mode
    model, blocks = adapt(setup, variant, rank)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    inputs = tuple(t.to(device) for t in setup.make_input(batch))
    kind, base = _start_peak(device)
    times, seen = [], set()
    for _ in range(steps):
        t0 = time.perf_counter()
        with _autocast(device, precision):
            out = model(*inputs)
            seen.add(str(_first_tensor(out).dtype).removeprefix("torch."))
            loss = setup.loss(out)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    peak = _peak_since(device, kind, base)
    return {
        "model": model_name,
        "variant": variant,
        "batch": batch,
        "rank": rank,
        "tiny": tiny,
        "device": device,
        "memory": kind,
        "precision": precision,
        "output_dtype": sorted(seen),
        "weights": WEIGHTS.get(model_name, "random"),
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "trainable": sum(p.numel() for p in params),
        "adapted_layers": len(setup.names),
        "checkpointed_blocks": blocks,
        "peak_mb": peak / 2**20,
        "step_s": statistics.median(times[1:] if len(times) > 1 else times),
        "step_times_s": times,
    }


def _autocast(device: str, precision: str):
    import contextlib

    if precision not in PRECISIONS:
        raise ValueError(f"bench size: --precision {precision!r}; choose from {PRECISIONS}")
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)


def _first_tensor(out) -> torch.Tensor:
    while not isinstance(out, torch.Tensor):
        out = out[0] if isinstance(out, (tuple, list)) else next(iter(out.values()))
    return out


def _one_in_subprocess(
    model_name, variant, batch, steps, rank, tiny, device, malloc_default=False, precision="32"
) -> dict:
    env = dict(os.environ)
    if not malloc_default:
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    cmd = [
        sys.executable, "-m", "lorakit.apps.cli.bench_size", "--one", model_name, variant,
        str(batch), str(steps), str(rank), "1" if tiny else "0", device, precision,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"bench size {model_name}/{variant} failed: {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_ratios(rows: list[dict]) -> None:
    """``vs_no_ckpt`` (same library) and ``vs_peft`` (same checkpointing) for each row."""
    by = {(r["model"], r["variant"]): r for r in rows}
    for r in rows:
        lib, ckpt = r["variant"].split("+")[0], r["variant"].endswith("+ckpt")
        plain = by.get((r["model"], lib))
        if ckpt and plain:
            r["memory_vs_no_ckpt"] = r["peak_mb"] / plain["peak_mb"]
            r["time_vs_no_ckpt"] = r["step_s"] / plain["step_s"]
        peft = by.get((r["model"], "peft+ckpt" if ckpt else "peft"))
        if lib == "lorakit" and peft:
            r["memory_vs_peft"] = r["peak_mb"] / peft["peak_mb"]
            r["time_vs_peft"] = r["step_s"] / peft["step_s"]


def format_table(rows: list[dict]) -> str:
    def ratio(r, key):
        return f"{r[key]:.2f}x" if key in r else "-"

    lines = [
        "| model | batch | variant | trainable | ckpt blocks | peak MB | step s "
        "| memory vs without ckpt | time vs without ckpt | memory vs PEFT | time vs PEFT |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['variant']} | {r['trainable']:,} "
            f"| {r['checkpointed_blocks']} | {r['peak_mb']:.0f} | {r['step_s']:.2f} "
            f"| {ratio(r, 'memory_vs_no_ckpt')} | {ratio(r, 'time_vs_no_ckpt')} "
            f"| {ratio(r, 'memory_vs_peft')} | {ratio(r, 'time_vs_peft')} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    by = {(r["model"], r["variant"]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(variants)
    colours = {
        "lorakit": "#1f77b4",
        "lorakit+ckpt": "#aec7e8",
        "peft": "#d62728",
        "peft+ckpt": "#ff9896",
    }
    for ax, key, label in (
        (axes[0], "peak_mb", "peak memory growth of one step (MB)"),
        (axes[1], "step_s", "wall time of one step (s)"),
    ):
        for i, v in enumerate(variants):
            xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(models))]
            ys = [by[(m, v)][key] if (m, v) in by else 0.0 for m in models]
            ax.bar(xs, ys, width, label=v, color=colours[v])
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels([f"{m}\nbatch {by[(m, variants[0])]['batch']}" for m in models])
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[0].legend(title="LoRA by", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    out: Path,
    models: tuple[str, ...] = MODELS,
    batch: int | None = None,
    steps: int = 2,
    rank: int = 4,
    tiny: bool = False,
    device: str = "cpu",
    echo=print,
    malloc_default: bool = False,
    precision: str = "32",
) -> list[dict]:
    """Every variant of every model in ``models``, one fresh process each; writes
    ``bench_size_<device>.json``, ``.md`` and ``.png`` into ``out`` and returns the rows."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(
            f"bench size: unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}"
        )
    if steps < 1:
        raise ValueError("bench size: --steps must be at least 1")
    _autocast(device, precision)  # a bad --precision fails before any model is built
    variants = VARIANTS
    if not peft_available():
        echo(f"PEFT is not installed, so only lorakit is measured; for the comparison: {EXTRA}")
        variants = tuple(v for v in VARIANTS if not v.startswith("peft"))
    rows = []
    for m in models:
        b = batch or DEFAULT_BATCH[m]
        for v in variants:
            t0 = time.perf_counter()
            rows.append(
                _one_in_subprocess(m, v, b, steps, rank, tiny, device, malloc_default, precision)
            )
            echo(
                f"[{m}/{v}] batch {b}: peak {rows[-1]['peak_mb']:.0f} MB, "
                f"step {rows[-1]['step_s']:.2f} s ({time.perf_counter() - t0:.0f} s in all)"
            )
    add_ratios(rows)
    stem = _write(rows, out, models, steps, rank, tiny, device, malloc_default, precision)
    echo(format_table(rows))
    echo(f"written: {stem}.json, .md, .png")
    return rows


def _write(rows, out, models, steps, rank, tiny, device, malloc_default, precision) -> Path:
    """``bench_size_<device>[_bf16][_tiny].json/.md/.png`` in ``out``; returns the stem."""
    out.mkdir(parents=True, exist_ok=True)
    dev = device.split(":")[0]
    bf16 = "_bf16" if precision == "bf16-mixed" else ""
    stem = out / f"bench_size_{dev}{bf16}{'_tiny' if tiny else ''}"
    size = "tiny stand-ins" if tiny else "real-size models, random weights"
    title = f"lorakit bench size: one LoRA training step (r={rank}), {size}, {dev}" + (
        ", bf16-mixed" if bf16 else ""
    )
    malloc = "glibc default" if malloc_default else f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}"
    info = {
        "title": title,
        "steps": steps,
        "precision": precision,
        "malloc": malloc if dev == "cpu" else None,
        "models": {m: LABELS[m] for m in models},
    }
    stem.with_suffix(".json").write_text(json.dumps({**info, "rows": rows}, indent=1))
    stem.with_suffix(".md").write_text(f"# {title}\n\n{format_table(rows)}\n")
    plot(rows, stem.with_suffix(".png"), title)
    return stem


def main(argv: list[str]) -> None:
    """``--one MODEL VARIANT BATCH STEPS RANK TINY DEVICE [PRECISION]``: one JSON line."""
    if len(argv) not in (8, 9) or argv[0] != "--one":
        raise SystemExit(
            "usage: python -m lorakit.apps.cli.bench_size --one MODEL VARIANT BATCH STEPS RANK "
            "TINY DEVICE [PRECISION]"
        )
    model, variant, batch, steps, rank, tiny, device = argv[1:8]
    precision = argv[8] if len(argv) == 9 else "32"
    row = measure(model, variant, int(batch), int(steps), int(rank), tiny == "1", device, precision)
    print(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1:])
