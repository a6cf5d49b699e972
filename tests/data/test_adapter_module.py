"""``AdapterModule``: checkpoints hold only what trains (an EMA teacher its own copies, never
a second frozen base) and resume exactly; the optimizer is built once (the method's own
optimizer, per-tensor groups, one lr schedule for every group); the regularizer is added."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lorakit.core import inject, make_config, protocol, regularization_loss
from lorakit.core.zoo import build
from lorakit.data.runs import RunFolder
from lorakit.data.runtime import (
    AdapterModule,
    Schedule,
    SeededItems,
    StepSampler,
    build_trainer,
    lr_factor,
    trainer_options,
)


class _Net(nn.Module):
    """The zoo's token MLP (adapted) and a plain trainable head outside any adapter."""

    def __init__(self, method: str, **hyper):
        super().__init__()
        self.body, _, targets, _ = build("linear")
        inject(self.body, make_config(method, targets=targets, r=2, **hyper))
        torch.manual_seed(5)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        return self.head(self.body(x))


class _Student(AdapterModule):
    """Student ``model`` and an EMA ``teacher`` (a deep copy: frozen base and all)."""

    mirrors = {"teacher": "model"}

    def __init__(self, method: str = "lora", schedule=Schedule(), weight_decay=0.0, **hyper):
        super().__init__(_Net(method, **hyper), lr=0.05, weight_decay=weight_decay,
                         schedule=schedule)
        self.teacher = copy.deepcopy(self.model).requires_grad_(False)
        self.lrs: list[list[float]] = []

    def task_loss(self, batch, batch_idx):
        return (self.model(batch) - self.teacher(batch).detach() - 1).pow(2).mean()

    def param_groups(self):
        head = list(self.model.head.parameters())
        body = [p for p in self.model.body.parameters() if p.requires_grad]
        return [{"params": body}, {"params": head, "lr": 2 * self.lr}]

    def after_optimizer_step(self):
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.model.parameters(), strict=True):
                if s.requires_grad:
                    t.mul_(0.5).add_(s, alpha=0.5)
        self.lrs.append([g["lr"] for g in self.trainer.optimizers[0].param_groups])


class _Tokens(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.randn(6, 32, generator=torch.Generator().manual_seed(i))


def _fit(out, module, max_steps: int, checkpoint_every: int = 2):
    opts = trainer_options({"max_steps": max_steps, "progress": False, "accelerator": "cpu",
                            "checkpoint_every": checkpoint_every, "log_every": 1})
    sampler = StepSampler(8, 2, opts.max_steps, 0)
    loader = DataLoader(SeededItems(_Tokens()), batch_sampler=sampler)
    trainer, ckpt = build_trainer(opts, RunFolder(out), sampler=sampler)
    trainer.fit(module, loader, ckpt_path=ckpt)
    return trainer


def test_checkpoint_holds_what_trains_and_the_teachers_copies_only(tmp_path):
    module = _Student()
    _fit(tmp_path, module, 2)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    trains = {f"model.{n}" for n, p in module.model.named_parameters() if p.requires_grad}
    assert trains and trains <= set(saved)
    assert {"model.head.weight", "teacher.head.weight"} <= set(saved)  # non-adapter, trained
    frozen = {k for k in module.state_dict() if k.endswith(".weight") and ".adapters." not in k
              and not k.endswith("head.weight")}
    assert frozen and not frozen & set(saved)  # neither base: the student's nor the teacher's
    teacher = {k for k in saved if k.startswith("teacher.")}
    assert teacher == {k.replace("model.", "teacher.", 1) for k in saved if k.startswith("model.")}


def test_checkpoint_leaves_out_what_the_base_determines_and_resumes_exactly(tmp_path):
    """Comp-LoRA's U_k (``from_base``) is rebuilt with the model, never checkpointed."""
    hyper = {"method": "comp_lora", "k": 4, "side": "both"}
    reference = _Student(**hyper)
    _fit(tmp_path / "reference", reference, 4)
    _fit(tmp_path / "killed", _Student(**hyper), 2)
    saved = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True)
    keys = set(saved["state_dict"])
    assert any(".adapters." in k and k.endswith(".A") for k in keys)
    basis = {k for k in reference.state_dict() if k.endswith((".U_k", ".V_k"))}
    assert basis and not basis & keys
    resumed = _Student(**hyper)
    _fit(tmp_path / "killed", resumed, 4)
    want, got = reference.state_dict(), resumed.state_dict()
    for k in want:
        assert torch.equal(want[k], got[k]), k


def test_resume_restores_student_teacher_and_optimizer_exactly(tmp_path):
    reference = _Student()
    _fit(tmp_path / "reference", reference, 4)
    _fit(tmp_path / "killed", _Student(), 2)
    resumed = _Student()
    _fit(tmp_path / "killed", resumed, 4)
    want, got = reference.state_dict(), resumed.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k


def test_checkpoint_missing_a_trained_tensor_is_one_line(tmp_path):
    module = _Student()
    state = {k: v for k, v in module.state_dict().items() if k != "model.head.weight"}
    with pytest.raises(ValueError, match="1 tensors missing") as err:
        _Student().load_state_dict(state)
    assert "\n" not in str(err.value) and "model.head.weight" in str(err.value)


def test_one_schedule_scales_every_group(tmp_path):
    schedule = Schedule(total=4, warmup=2, kind="cosine")
    module = _Student(schedule=schedule)
    _fit(tmp_path, module, 4)
    for step, lrs in enumerate(module.lrs, start=1):  # lr in effect for the next step
        f = lr_factor(step, 4, 2, "cosine")
        assert lrs == pytest.approx([0.05 * f, 0.1 * f])
    assert lr_factor(0, 4, 2, "cosine") == 0.5 and lr_factor(3, 4, 2, "cosine") == pytest.approx(
        0.5 * (1 + math.cos(math.pi / 2))
    )
    with pytest.raises(ValueError, match="cosine or constant"):
        Schedule(kind="linear")


def test_methods_own_optimizer_and_per_tensor_options_are_used(tmp_path):
    module = _Student("allora")
    _fit(tmp_path / "allora", module, 1)
    own = protocol.method_optimizer(module.model, lr=0.05)
    assert type(module.trainer.optimizers[0]) is type(own) and type(own) is not torch.optim.AdamW
    module = _Student("sora", weight_decay=0.1)
    opt = module.build_optimizer()
    gates = {id(p) for n, p in module.model.named_parameters() if n.endswith(".g")}
    assert gates
    for g in opt.param_groups:
        in_group = {id(p) for p in g["params"]}
        assert g["weight_decay"] == (0.0 if in_group <= gates else 0.1)
    assert any({id(p) for p in g["params"]} <= gates for g in opt.param_groups)


def test_training_step_adds_the_methods_regularizer():
    module = _Student("s2_lora")
    batch = torch.stack([_Tokens()[i] for i in range(2)])
    reg = regularization_loss(module.model).detach()
    assert float(reg) > 0
    total = module.training_step(batch, 0)
    assert float(total) == pytest.approx(float(module.task_loss(batch, 0) + reg))
