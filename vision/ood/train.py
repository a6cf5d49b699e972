"""Lightning training for the robustness pipeline, and LARGO's radius / update-norm monitor.

``OODModule`` trains whatever ``methods.prepare`` left trainable in ``self.model`` (the
classifier): cross-entropy on ID images (+ ``regularization_loss``), AdamW with linear
warm-up and cosine decay over ``max_steps`` (the runtime's ``AdapterModule``; its
checkpoints hold the trainable tensors, the whole network only under full fine-tuning).
Frozen backbones keep BatchNorm statistics fixed (eval mode) so linear probes and adapters
do not drift through running stats.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from lorakit.core import LARGO, named_methods
from lorakit.data.runtime import AdapterModule, Schedule

from .config import OptimConfig


class RandomFlip(Dataset):
    """Horizontal flips with probability 1/2, drawn from torch's RNG: under the runtime's
    ``SeededItems`` each item's draw depends on its stream position only (exact resume,
    the same flips in a 1-process and a DDP run)."""

    def __init__(self, dataset: Dataset, enabled: bool = True):
        self.dataset, self.enabled = dataset, enabled

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        if self.enabled and float(torch.rand(())) < 0.5:
            x = x.flip(-1)
        return x, y


class OODModule(AdapterModule):
    """Fine-tunes ``model`` (a ``build.Classifier`` prepared by ``methods.prepare``): the
    head at ``head_lr``, the rest at ``lr``, linear warm-up then cosine decay."""

    def __init__(self, model: nn.Module, optim: OptimConfig, max_steps: int, full: bool):
        warm = max(1, int(optim.warmup * max_steps))
        schedule = Schedule(max_steps, warm, "cosine")
        super().__init__(model, optim.lr, optim.weight_decay, schedule=schedule)
        self.optim, self.max_steps, self.full = optim, max_steps, full

    def on_train_epoch_start(self) -> None:
        if not self.full:  # frozen backbone: BatchNorm keeps the pretrained statistics
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def batch_size(self, batch) -> int:
        return len(batch[1])

    def task_loss(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        acc = (logits.argmax(-1) == y).float().mean()
        self.log("train_acc", acc, prog_bar=True, batch_size=len(y))
        return F.cross_entropy(logits, y)

    def param_groups(self) -> list[dict]:
        head = {id(p) for p in self.model.head.parameters()}
        train = [p for p in self.model.parameters() if p.requires_grad]
        return [
            {"params": [p for p in train if id(p) not in head], "lr": self.optim.lr},
            {
                "params": [p for p in train if id(p) in head],
                "lr": self.optim.head_lr or self.optim.lr,
            },
        ]


def largo_layers(model: nn.Module) -> list[tuple[str, LARGO]]:
    """``(layer:slot, LARGO module)`` for every LARGO slot in the model."""
    out = []
    for name, slot, m in named_methods(model):
        if isinstance(m, LARGO):
            out.append((name if slot == "weight" else f"{name}:{slot}", m))
    return out


class LargoMonitor(L.Callback):
    """After every optimizer step (and LARGO's radius update): per layer ``gamma_l``,
    ``||D_l||_F`` (unprojected) and ``||W_eff - W0||_F`` (dense, from ``delta_weight``).

    Rows go to ``csv_path`` (step, layer, gamma, update_norm, effective_norm); means are
    logged to Lightning. A step where ``||W_eff - W0||_F > gamma (1 + tol)`` is recorded
    in ``violations`` (and raises when ``strict``).
    """

    FIELDS = ("step", "layer", "gamma", "update_norm", "effective_norm")

    def __init__(self, csv_path: str | Path, tol: float = 1e-4, strict: bool = False):
        self.csv_path, self.tol, self.strict = Path(csv_path), tol, strict
        self.violations: list[tuple[int, str, float, float]] = []
        self.steps_checked = 0
        self._done = 0

    def on_train_start(self, trainer, pl_module) -> None:
        """A resumed run drops the rows of steps after its checkpoint (it repeats them)."""
        self._done = int(trainer.global_step)
        if trainer.is_global_zero and self.csv_path.is_file():
            with self.csv_path.open(newline="") as f:
                rows = [r for r in csv.reader(f)]
            keep = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= self._done] if rows else []
            tmp = self.csv_path.with_name(f".{self.csv_path.name}.tmp")
            with tmp.open("w", newline="") as f:
                csv.writer(f).writerows(keep if self._done else keep[:1])
            tmp.replace(self.csv_path)

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        layers = largo_layers(pl_module.model)
        if not layers or trainer.global_step == self._done:  # inside gradient accumulation
            return
        self._done = step = int(trainer.global_step)
        rows = []
        for name, m in layers:
            gamma = float(m.gamma)
            norm = float(m.update_norm())
            eff = float(m.delta_weight().float().norm())
            if eff > gamma * (1 + self.tol) + 1e-7:
                self.violations.append((step, name, gamma, eff))
                if self.strict:
                    raise AssertionError(
                        f"LARGO radius violated at step {step}, layer {name}: "
                        f"||dW||_F = {eff:.6g} > gamma = {gamma:.6g}"
                    )
            rows.append((step, name, gamma, norm, eff))
        self.steps_checked += 1
        pl_module.log("largo_gamma_mean", sum(r[2] for r in rows) / len(rows))
        pl_module.log("largo_dw_mean", sum(r[4] for r in rows) / len(rows))
        if trainer.is_global_zero:
            new = not self.csv_path.is_file() or self.csv_path.stat().st_size == 0
            self.csv_path.parent.mkdir(parents=True, exist_ok=True)
            with self.csv_path.open("a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(self.FIELDS)
                w.writerows(rows)


def largo_summary(path: str | Path, tol: float = 1e-4) -> dict:
    """Steps checked, radius violations and final gamma/dW per layer, from the whole CSV
    (both parts of a resumed run)."""
    curves = read_largo_csv(path)
    steps = {s for v in curves.values() for s in v["step"]}
    bad = sum(
        e > g * (1 + tol) + 1e-7
        for v in curves.values()
        for g, e in zip(v["gamma"], v["effective_norm"], strict=True)
    )
    return {
        "steps_checked": len(steps),
        "radius_violations": int(bad),
        "final": {k: {"gamma": v["gamma"][-1], "dw": v["effective_norm"][-1]} for k, v in curves.items()},
    }


def read_largo_csv(path: str | Path) -> dict[str, dict[str, list[float]]]:
    """``{layer: {"step": [...], "gamma": [...], "update_norm": [...], "effective_norm": [...]}}``."""
    out: dict[str, dict[str, list[float]]] = {}
    path = Path(path)
    if not path.is_file():
        return out
    with path.open() as f:
        for row in csv.DictReader(f):
            d = out.setdefault(row["layer"], {k: [] for k in LargoMonitor.FIELDS if k != "layer"})
            for k in d:
                d[k].append(float(row[k]))
    return out
