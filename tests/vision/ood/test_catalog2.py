"""Catalogue II methods in the OOD pipeline: a trained head beside the method's optimizer."""

import json

import lightning as L
import pytest

from lorakit.core.methods.allora import ALLoRAOptimizer
from lorakit.vision.ood import pipeline


class _Spy(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, *args):
        self.optimizer = trainer.optimizers[0]
        self.model = pl_module.model


@pytest.mark.parametrize(
    ("method", "hyper"),
    [("allora", {"eta": 1.0}), ("increlora", {"warmup": 1, "interval": 1, "budget_r": 3})],
)
def test_ood_trains_catalogue_ii_methods(method, hyper, tiny_cfg, tmp_path):
    spy = _Spy()
    cfg = tiny_cfg(method, adapter={"hyper": hyper})
    metrics = pipeline.train(cfg, tmp_path, callbacks=[spy])
    head = {id(p) for p in spy.model.head.parameters()}
    groups = spy.optimizer.param_groups
    head_groups = [g for g in groups if {id(p) for p in g["params"]} & head]
    assert head_groups, "the head must still train"
    if method == "allora":
        assert isinstance(spy.optimizer, ALLoRAOptimizer)
    else:
        ranks = json.loads((tmp_path / "ranks.json").read_text())
        assert ranks["methods"] == ["increlora"] and ranks["total"] > 2 * len(ranks["ranks"])
        assert (tmp_path / "plots" / "ranks.png").is_file()
    assert "id_accuracy" in metrics
