"""Accuracy on the ID test set, each OOD set, and each corruption x severity.

Headline metrics (``metrics.json``): ``id_accuracy`` (also ``accuracy``), ``ood_accuracy``
(mean over the OOD folder sets; the corruption mean when there are none), plus
``ood`` (per set), ``corruptions`` (``{name: {severity: acc}}``), ``corruption_accuracy``
(mean over the grid) and ``corruption_by_severity``. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from lorakit.data.corruptions import resolve

from .config import SUITES, EvalConfig  # noqa: F401  (old names)
from .data import EvalSet, ImageFolderSet, cached

log = logging.getLogger(__name__)
@torch.no_grad()
def accuracy(
    model: nn.Module, dataset: Dataset, restrict: list[int] | None = None, batch_size: int = 256
) -> float:
    """Top-1 accuracy; with ``restrict`` the argmax runs over those class indices only."""
    was = model.training
    model.eval()
    correct = total = 0
    idx = torch.tensor(restrict) if restrict is not None else None
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        logits = model(x)
        pred = idx[logits[:, idx].argmax(-1)] if idx is not None else logits.argmax(-1)
        correct += int((pred == y).sum())
        total += len(y)
    model.train(was)
    return correct / max(total, 1)


class Suite:
    """The evaluation sets of one task. With ``cache=True`` every set (and each corrupted
    copy) is materialised once and reused: benchmarks evaluate many models on it."""

    def __init__(
        self, id_test: ImageFolderSet, ood: list[EvalSet], cfg: EvalConfig, cache: bool = False
    ):
        self.cfg, self.cache = cfg, cache
        self.id_test = EvalSet("id", id_test)
        self.ood = ood
        self.grid = (
            [(c, int(s)) for c in resolve(cfg.corruptions) for s in cfg.severities]
            if cfg.corruptions
            else []
        )
        self._corr_base = None
        self._memo: dict = {}

    def _get(self, key, make) -> Dataset:
        if not self.cache:
            return make()
        if key not in self._memo:
            self._memo[key] = cached(make())
        return self._memo[key]

    def corrupted(self, name: str, severity: int) -> Dataset:
        if self._corr_base is None:
            base = self.id_test.dataset
            k = self.cfg.corruption_per_class
            self._corr_base = (
                ImageFolderSet(base.root, base.classes, base.size, max_per_class=k) if k else base
            )
        return self._get(
            ("c", name, severity),
            lambda: self._corr_base.with_corruption(name, severity, self.cfg.corruption_seed),
        )

    def acc(self, model: nn.Module, s: EvalSet) -> float:
        return accuracy(
            model, self._get(("s", s.name), lambda: s.dataset), s.restrict, self.cfg.batch_size
        )


def evaluate_model(
    model: nn.Module, suite: Suite, parts: tuple[str, ...] = ("id", "ood", "corruptions")
) -> dict:
    """The metrics dict for ``model`` on the chosen parts of ``suite``."""
    out: dict = {}
    if "id" in parts:
        out["id_accuracy"] = out["accuracy"] = suite.acc(model, suite.id_test)
    if "ood" in parts and suite.ood:
        out["ood"] = {s.name: suite.acc(model, s) for s in suite.ood}
        out["ood_accuracy"] = sum(out["ood"].values()) / len(out["ood"])
    if "corruptions" in parts and suite.grid:
        table: dict[str, dict[str, float]] = {}
        for c, sev in tqdm(
            suite.grid, desc="corruptions", unit="set", mininterval=2.0, leave=False
        ):
            table.setdefault(c, {})[str(sev)] = accuracy(
                model, suite.corrupted(c, sev), None, suite.cfg.batch_size
            )
        out["corruptions"] = table
        vals = [v for row in table.values() for v in row.values()]
        out["corruption_accuracy"] = sum(vals) / len(vals)
        sevs = sorted({s for _, s in suite.grid})
        out["corruption_by_severity"] = {
            str(s): sum(row[str(s)] for row in table.values()) / len(table) for s in sevs
        }
        if "ood_accuracy" not in out:
            out["ood_accuracy"] = out["corruption_accuracy"]
    return out


def parts_for(suite_name: str, suite: Suite) -> tuple[tuple[str, ...], Suite]:
    """Map ``--suite`` onto parts; a set or corruption name narrows the suite to it."""
    if suite_name in ("all", "wise"):
        return ("id", "ood", "corruptions"), suite
    if suite_name in ("id", "ood", "corruptions"):
        return ("id", suite_name) if suite_name != "id" else ("id",), suite
    names = [s.name for s in suite.ood]
    if suite_name in names:
        suite.ood = [s for s in suite.ood if s.name == suite_name]
        return ("id", "ood"), suite
    try:
        picked = resolve([suite_name])
    except ValueError:
        raise ValueError(
            f"unknown suite {suite_name!r}; use one of {SUITES}, an OOD set ({', '.join(names)}), "
            "a corruption or a corruption family"
        ) from None
    suite.grid = [(c, s) for c in picked for s in suite.cfg.severities]
    return ("id", "corruptions"), suite
