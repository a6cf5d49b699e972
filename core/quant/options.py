"""A pipeline's ``backbone.quantize`` config section: train on a quantized base from the CLI.

    lorakit train asr --config demos/asr.yaml --set backbone.quantize.bits=4
    model: {quantize: {bits: 4, scheme: nf, group_size: 64, targets: [], backend: auto}}

``bits`` null (the default) keeps the float base. Otherwise ``quantize_and_inject`` replaces
the chosen Linear layers (``targets``: name patterns or presets; empty: every Linear) by
packed ``bits``-bit codes and injects the adapter on top; a quantization-aware method
(``loftq``, ``lq_lora``, ``qwha``) absorbs the quantization error at that moment
(``quantize(model, adapter=...)``). ``quant_metrics`` is what a run's metrics.json records:
bits, layers, the base's bytes against float32, the mean relative weight error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from torch import nn

from .backends import check_backend
from .codes import check_spec
from .model import QuantReport, load_quantized, model_bytes, quantize, save_quantized

BASE_FILE = "base_quantized.safetensors"  # a run's quantized base, when codes were absorbed


@dataclass
class QuantOptions:
    bits: int | None = None  # None: no quantization (a float base)
    scheme: str = "nf"
    group_size: int = 64
    targets: list[str] = field(default_factory=list)  # empty: every nn.Linear
    backend: str = "auto"  # the matmul kernel: auto | torch | bitsandbytes (backends.py)


# what a config records by default; ``backend`` (auto) only when set, so the configs (and
# fingerprints) of runs made before it stay the same
QUANT_DEFAULTS = {k: v for k, v in asdict(QuantOptions()).items() if k != "backend"}


def quant_options(section, where: str = "backbone.quantize") -> QuantOptions | None:
    """The validated section (``None`` when ``bits`` is null); bad keys or values raise one
    ``ValueError`` line naming ``where`` and the field."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ValueError(f"{where} must be a mapping (bits, scheme, group_size, targets)")
    valid = [f.name for f in fields(QuantOptions)]
    unknown = sorted(set(section) - set(valid))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {valid}")
    opts = QuantOptions(**{**QUANT_DEFAULTS, **section})
    if opts.bits is None:
        return None
    targets = opts.targets
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list | tuple) or not all(isinstance(t, str) for t in targets):
        raise ValueError(f"{where}.targets must be a list of name patterns or presets")
    opts.targets = list(targets)
    try:
        check_spec(opts.bits, opts.scheme, opts.group_size)
        check_backend(opts.backend)
    except ValueError as e:
        raise ValueError(f"{where}: {str(e).removeprefix('quantize: ')}") from None
    return opts


def quantize_and_inject(model: nn.Module, opts: QuantOptions | None, adapter_cfg,
                        name: str = "default", fisher: dict | None = None):
    """``(InjectReport, QuantReport | None)``: quantize (when ``opts``), then inject;
    ``fisher`` goes to ``quantize`` (LQ-LoRA with ``fisher: true``)."""
    from ..inject import inject

    if opts is None:
        return inject(model, adapter_cfg, name), None
    report = quantize(model, opts.bits, opts.scheme, opts.group_size, tuple(opts.targets),
                      adapter=adapter_cfg, adapter_name=name, fisher=fisher,
                      backend=opts.backend)
    return report.adapter, report


def absorbs(method: str) -> bool:
    """Whether ``method`` chooses the base's codes itself (then they must be saved)."""
    from ..methods import METHODS

    cls = METHODS[method][1]
    return hasattr(cls, "absorb") or hasattr(cls, "plan_bits")


def save_run_base(model: nn.Module, run_dir: Path, method: str) -> Path | None:
    """Write the run's quantized base when ``method`` chose its codes (LoftQ, LQ-LoRA,
    QWHA): re-quantizing the float model from the config would not give them back."""
    if not absorbs(method):
        return None
    return save_quantized(model, Path(run_dir) / BASE_FILE)


def restore_run_base(model: nn.Module, run_dir: Path, opts: QuantOptions | None) -> None:
    """Turn a freshly loaded float model into the run's quantized base (before its adapter
    is loaded): the saved codes when the run wrote them, else the config's quantization."""
    if opts is None:
        return
    saved = Path(run_dir) / BASE_FILE
    if saved.is_file():
        load_quantized(model, saved, opts.backend)
    else:
        quantize(model, opts.bits, opts.scheme, opts.group_size, tuple(opts.targets),
                 backend=opts.backend)


def quant_metrics(model: nn.Module, report: QuantReport) -> dict:
    """What metrics.json records about a quantized base (bytes measured on the model)."""
    b = model_bytes(model)
    layers = report.layers
    adapted = [q for q in layers if q.rel_error_adapted is not None]
    out = {
        "bits": sorted({q.bits for q in layers}),
        "scheme": report.scheme,
        "group_size": report.group_size,
        "layers": len(layers),
        "quantized_layer_bytes": report.quantized_bytes,
        "quantized_layer_fp32_bytes": report.fp32_bytes,
        "base_bytes": b["total"],
        "base_fp32_bytes": b["dense_total"],
        "base_ratio": round(b["ratio"], 4),
        "mean_rel_error": round(sum(q.rel_error for q in layers) / len(layers), 5),
    }
    if adapted:  # the layers whose init absorbed error: plain error vs Q + dW's error
        n = len(adapted)
        out["absorbed_layers"] = n
        out["absorbed_rel_error_plain"] = round(sum(q.rel_error for q in adapted) / n, 5)
        out["absorbed_rel_error_after_init"] = round(
            sum(q.rel_error_adapted for q in adapted) / n, 5)
    if report.notes:
        out["notes"] = list(report.notes)
    return out
