"""``backbone.quantize`` for every pipeline: train on a quantized base, keep its codes.

    base = QuantizedBase(sections["quantize"], run.path, keep=("head",))
    report = base.inject(model, adapter_cfg)    # quantize, then inject (absorbing methods
                                                # choose the codes: LoftQ, LQ-LoRA, QWHA)
    base.quantize(model)                        # no adapter (a linear probe, SAM zero-shot)
    base.restore(fresh_model)                   # eval / predict: the run's codes again
    base.inject(model, cfg, calibration=Calibration(batch, loss))  # data-aware inits

A pipeline calls ``inject`` where it injected its adapter before (``quantize_and_inject``
with the run's spec); nothing else is pipeline-specific. ``Calibration`` is the pipeline's
own training stream (``batch(step)``: the global batch of a step, no DDP shard, so every
rank estimates the same; ``loss(batch)``: the whole model's training loss on it) for
methods that read data before their initialisation: LQ-LoRA with ``fisher: true``
estimates the diagonal Fisher (``fisher_diagonal``) from batches ``0 .. fisher_batches-1``
on the float model, then decomposes; metrics.json records ``quantized.fisher_batches``.
The batches are recomputed from the step, so a resumed run estimates the same Fisher and
rebuilds the same codes.

Layers that train in full (the adapter's ``modules_to_save``, the pipeline's ``keep``)
stay float: frozen codes cannot train. Every quantized run writes its base to ``base_quantized.safetensors``, so ``eval``
and ``predict`` load exactly the codes training ran on (re-quantizing from the config would
not give back what an absorbing method chose, nor the layers left float). The shared run
(``run_training``) records ``quant_metrics`` under ``quantized`` in metrics.json.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from lorakit.core.quant.fisher import fisher_diagonal
from lorakit.core.quant.model import quant_targets, quantize
from lorakit.core.quant.options import (
    BASE_FILE,
    QuantOptions,
    quant_metrics,
    quant_options,
    quantize_and_inject,
    restore_run_base,
    save_quantized,
)


def backbone_quant_options(cfg: dict) -> QuantOptions | None:
    """The config's ``backbone.quantize`` checked (``None``: a float base); a bad spec is one
    ``ValueError`` line naming ``backbone.quantize``."""
    backbone = cfg.get("backbone") or {}
    return quant_options(backbone.get("quantize") or None, "backbone.quantize")


@dataclass
class Calibration:
    """A pipeline's training stream for data-aware initialisations (see the module doc)."""

    batch: Callable[[int], object]  # step -> the global batch of that step
    loss: Callable[[object], Tensor]  # batch -> the whole model's training loss

    @classmethod
    def from_sampler(cls, items, sampler, loss, collate=None) -> Calibration:
        """Batches as a ``StepSampler`` over ``items`` (``SeededItems``) yields them, whole
        (every rank's share), collated as the DataLoader does (``collate``: its
        ``collate_fn``, default torch's)."""
        from torch.utils.data import default_collate

        collate = collate or default_collate
        return cls(lambda step: collate([items[k] for k in sampler.global_batch(step)]), loss)


class QuantizedBase:
    """One run's quantized base: quantizes at build, writes the codes, restores them."""

    def __init__(self, opts: QuantOptions | None, run_dir: str | Path | None = None,
                 keep: tuple[str, ...] = ()):
        self.opts, self.run_dir, self.keep = opts, Path(run_dir) if run_dir else None, keep
        self.report = None  # the QuantReport once quantized
        self.model: nn.Module | None = None
        self.fisher_batches: int | None = None  # batches the Fisher was estimated from

    @property
    def enabled(self) -> bool:
        return self.opts is not None

    def _targets(self, model: nn.Module, saved=()) -> tuple[str, ...]:
        """The layers to quantize by full name: ``opts.targets`` (every Linear when empty)
        minus those inside a kept or fully trained module."""
        kept = tuple(self.keep) + tuple(saved or ())

        def inside(name: str) -> bool:
            return any(f".{k}." in f".{name}." for k in kept)

        names = tuple(n for n, _ in quant_targets(model, self.opts.targets) if not inside(n))
        if not names:
            raise ValueError(f"backbone.quantize: targets {self.opts.targets} leave no layer "
                             f"to quantize outside the fully trained modules {list(kept)}")
        return names

    def inject(self, model: nn.Module, adapter_cfg, name: str = "default",
               calibration: Calibration | None = None):
        """Quantize ``model`` (when the run asks for it) and inject ``adapter_cfg``; returns
        the ``InjectReport``. Without a spec this is ``lorakit.core.inject``.
        ``calibration``: the run's batches and loss (LQ-LoRA's ``fisher: true`` needs it)."""
        if not self.enabled:
            return quantize_and_inject(model, None, adapter_cfg, name)[0]
        opts = QuantOptions(**{**self.opts.__dict__,
                               "targets": list(self._targets(model, adapter_cfg.modules_to_save))})
        fisher = None
        if getattr(adapter_cfg, "fisher", False):
            fisher = self._fisher(model, opts, adapter_cfg, calibration)
        report, self.report = quantize_and_inject(model, opts, adapter_cfg, name, fisher)
        self._keep_codes(model)
        return report

    def _fisher(self, model: nn.Module, opts: QuantOptions, adapter_cfg,
                calibration: Calibration | None) -> dict[str, Tensor]:
        """The diagonal Fisher of the layers about to be quantized, from the first
        ``adapter.fisher_batches`` batches of the run's training stream."""
        if calibration is None:
            raise ValueError(f"adapter.fisher: this pipeline gives {adapter_cfg.method} no "
                             "training batches to estimate the Fisher from")
        n = int(adapter_cfg.fisher_batches)
        fisher = fisher_diagonal(model, (calibration.batch(i) for i in range(n)),
                                 lambda _, b: calibration.loss(b), tuple(opts.targets))
        self.fisher_batches = n
        return fisher

    def quantize(self, model: nn.Module) -> None:
        """Quantize ``model`` with no adapter on top (a linear probe, a zero-shot run)."""
        if not self.enabled:
            return
        opts = QuantOptions(**{**self.opts.__dict__, "targets": list(self._targets(model))})
        self.report = quantize(model, opts.bits, opts.scheme, opts.group_size,
                               tuple(opts.targets), backend=opts.backend)
        self._keep_codes(model)

    def _keep_codes(self, model: nn.Module) -> None:
        """Write the codes atomically (every DDP rank builds, and writes, the same file)."""
        self.model = model
        if self.run_dir is not None:
            path = self.run_dir / BASE_FILE
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_quantized(model, tmp)
            os.replace(tmp, path)

    def restore(self, model: nn.Module) -> nn.Module:
        """A freshly built float model turned into the run's quantized base (before its
        adapter is loaded): the saved codes, else the config's quantization."""
        if self.enabled:
            restore_run_base(model, self.run_dir, self.opts)
        return model

    def metrics(self) -> dict:
        """``{"quantized": ...}`` for metrics.json once the base was quantized, else ``{}``."""
        if self.report is None:
            return {}
        out = quant_metrics(self.model, self.report)
        if self.fisher_batches is not None:
            out["fisher_batches"] = self.fisher_batches
        return {"quantized": out}
