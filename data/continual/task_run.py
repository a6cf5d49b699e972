"""One task of a continual run with one learning rate, as a pipeline of the shared runtime.

The sequence (``loop.py``) trains each sweep candidate with the same ``run_training`` as
every other pipeline: ``TaskRun`` gives the hooks (the model at the start of the task, its
batches and ``TaskModule``; after the fit the method's end of task and the validation score;
the changed tensors as the saved result), ``run_training`` does the rest (open the run
folder, refuse a changed config, build the Trainer, fit with exact resume, write
``metrics.json``). A candidate folder is thus an ordinary run folder::

    tasks/<i>-<name>/lr<k>/   config.yaml (the task's config: this lr, this budget),
                              checkpoints/ (removed once the candidate is done), logs/,
                              metrics.json, state.pt (the model state the loop keeps or drops)
"""

from __future__ import annotations

import copy
from pathlib import Path

from lorakit.data.runs import RunFolder
from lorakit.data.runtime.options import trainer_options
from lorakit.data.runtime.pipeline import Fit, Pipeline

from .baselines import Method
from .module import TaskModule
from .state import build_model, changed_tensors, save_state, seed_task

# run_training's keys that say nothing about a candidate (the sweep records keep the rest)
NOT_RECORDED = ("method", "trainable_parameters", "adapted_layers")


def task_config(cfg: dict, lr: float, ids) -> dict:
    """The config one candidate trains under: ``optim.lr`` this candidate's, and
    ``trainer.max_steps`` the per-task budget times the tasks trained together (joint)."""
    cfg = copy.deepcopy(cfg)
    cfg["optim"]["lr"] = lr
    cfg["trainer"]["max_steps"] = trainer_options(cfg["trainer"]).max_steps * len(ids)
    return cfg


class TaskRun(Pipeline):
    """Train task ``t`` (the data of tasks ``ids``) from the model saved in ``prev``."""

    name = "continual"
    curve_file = None  # a few steps per task: the sequence draws task_curves.png instead

    def __init__(self, domain, method: Method, t: int, ids, prev: Path | None):
        self.domain, self.method, self.t, self.ids, self.prev = domain, method, t, list(ids), prev

    def check(self, cfg: dict) -> dict:
        """The sequence checked every section (``check_config``, which refuses a quantized
        base); the trainer options, and no quantized base."""
        return {"trainer": trainer_options(cfg["trainer"]), "quantize": None}

    def build(self, cfg: dict, run: RunFolder, sections: dict, data) -> Fit:
        opts, seed = sections["trainer"], sections["trainer"].seed
        model, carried = build_model(self.domain, self.method, self.t, self.prev, seed)
        self.domain.set_task(model, self.ids)
        loader, sampler = self.domain.batches(
            self.ids, opts.max_steps * opts.accumulate, int(cfg["optim"]["batch_size"]),
            seed + 101 * self.t,
        )  # fmt: skip
        module = TaskModule(model, self.domain.loss, self.method, loader, cfg["optim"], carried)
        return Fit(method=self.method.name, module=module, sampler=sampler,
                   state={"model": model, "seed": seed, "lr": cfg["optim"]["lr"]})  # fmt: skip

    def after_fit(self, fit: Fit, run: RunFolder, trainer, sections: dict) -> dict:
        """The method closes the task (seeded: GORP's basis, a merge), then the validation
        score of the tasks trained on picks the learning rate."""
        model, seed = fit.state["model"], fit.state["seed"]
        seed_task(seed, self.t, 500)
        fit.state["carried"] = self.method.end_task(model, trainer.optimizers[0])
        model.eval()
        val = [self.domain.evaluate(model, j, "val") for j in self.ids]
        fit.state["val"] = sum(val) / len(val)
        return {}

    def save(self, fit: Fit, run: RunFolder) -> None:
        """``state.pt``: what training changed against a fresh replay of the task's start,
        and what the method carries to the next task."""
        reference, _ = build_model(self.domain, self.method, self.t, None, fit.state["seed"])
        changed = changed_tensors(fit.state["model"], reference)
        save_state(run.path / "state.pt", {"model": changed, "carried": fit.state["carried"]})

    def metrics(self, cfg: dict, run: RunFolder, fit: Fit, sections: dict) -> dict:
        return {"lr": fit.state["lr"], "val": fit.state["val"],
                "train_seconds": round(fit.module.seconds, 2), **fit.module.memory}  # fmt: skip


def candidate_record(metrics: dict) -> dict:
    """A candidate's sweep record (``result.json``, ``row.json``'s ``sweep``) from its
    ``metrics.json``: lr, val, steps, resumed_from_step, train_seconds, optimizer state."""
    keys = ("lr", "val", "steps", "resumed_from_step", "train_seconds")
    return {k: metrics[k] for k in keys} | {
        k: v for k, v in metrics.items() if k not in keys and k not in NOT_RECORDED
    }
