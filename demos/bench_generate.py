"""Benchmark: ICM-LoRA-style generated adapters (``lorakit.core.generate``) on a toy family.

Task ``t`` (a number): regress the outputs of the zoo's ``TokenMLP`` whose ``fc1`` weight
is moved by ``D(t) = g * (cos(pi t / 2) U1 V1^T + sin(pi t / 2) U2 V2^T)`` (rank 2, fixed
random ``U``, ``V`` per seed). Description: ``"token regression, phase <t>"``.

Per seed: a bank of LoRA adapters (r=2 on fc1, one shared A initialisation, Adam,
``--train-steps``) on ``--bank`` tasks evenly spaced in [0, 2]; ``--held`` held-out tasks
drawn uniformly in (0, 2); the generator trained on the bank. For each held-out task, the
test MSE (fresh inputs) of: the base model (no adapter), the bank adapter whose number is
nearest, the generated adapter, and an adapter trained on that task with the bank's
budget. Prints a Markdown table (``lorakit.data.generation_report``, shared with
``lorakit generate report``): mean and 95 % t-interval over (seed, task) pairs, and the
paired difference generated - other.

    .venv/bin/python demos/bench_generate.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import torch

from lorakit.core import inject, load_adapter, make_config, save_adapter, zoo
from lorakit.core.generate import fit_generator
from lorakit.data.generation_report import markdown, summarise
from lorakit.data.intervals import mean_ci


def teacher_fn(seed: int, gain: float):
    """``t -> model`` computing task ``t``'s target (the base with ``W1 + D(t)``)."""
    g = torch.Generator().manual_seed(1000 + seed)
    u = torch.randn(2, 64, 1, generator=g) / 8**0.5
    v = torch.randn(2, 1, 32, generator=g) / 32**0.5 * 4

    def make(t: float):
        model = zoo.build("linear", seed=seed)[0]
        a = math.pi * t / 2
        with torch.no_grad():
            model.fc1.weight += gain * (math.cos(a) * u[0] @ v[0] + math.sin(a) * u[1] @ v[1])
        return model

    return make


def student(seed: int):
    model = zoo.build("linear", seed=seed)[0]
    torch.manual_seed(10_000 + seed)  # one A initialisation for the whole bank
    inject(model, make_config("lora", r=2, targets=("fc1",)))
    return model


def train_adapter(seed, teacher, x, steps, lr, out: Path) -> Path:
    model = student(seed)
    with torch.no_grad():
        y = teacher(x)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
    return save_adapter(model, out)


@torch.no_grad()
def test_mse(seed, teacher, x, folder) -> float:
    model = zoo.build("linear", seed=seed)[0]
    if folder is not None:
        load_adapter(model, folder)
    return (model(x) - teacher(x)).pow(2).mean().item()


def desc(t: float) -> str:
    return f"token regression, phase {t:.3f}"


def run_seed(seed, args, root: Path) -> list[dict]:
    make = teacher_fn(seed, args.gain)
    g = torch.Generator().manual_seed(seed)
    x_train = torch.randn(args.n, 6, 32, generator=g)
    x_test = torch.randn(256, 6, 32, generator=g)
    bank_t = [2 * i / (args.bank - 1) for i in range(args.bank)]
    held_t = [0.05 + 1.9 * torch.rand((), generator=g).item() for _ in range(args.held)]
    bank = [train_adapter(seed, make(t), x_train, args.train_steps, args.lr, root / f"b{t:.3f}")
            for t in bank_t]
    gen = fit_generator(bank, [desc(t) for t in bank_t], steps=args.gen_steps, seed=seed)
    rows = []
    for t in held_t:
        teacher = make(t)
        near = bank[min(range(len(bank_t)), key=lambda i: abs(bank_t[i] - t))]
        trained = train_adapter(seed, teacher, x_train, args.train_steps, args.lr, root / f"h{t:.3f}")
        rows.append({
            "none": test_mse(seed, teacher, x_test, None),
            "nearest bank": test_mse(seed, teacher, x_test, near),
            "generated": test_mse(seed, teacher, x_test, gen.generate(desc(t), root / f"g{t:.3f}")),
            "trained": test_mse(seed, teacher, x_test, trained),
        })
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--bank", type=int, default=12)
    p.add_argument("--held", type=int, default=4)
    p.add_argument("--n", type=int, default=64, help="training inputs per task (x 6 tokens)")
    p.add_argument("--train-steps", type=int, default=150)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--gen-steps", type=int, default=1000)
    p.add_argument("--gain", type=float, default=1.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rows += run_seed(seed, args, Path(tmp) / str(seed))
    print(f"{len(args.seeds)} seeds x {args.held} held-out tasks, bank {args.bank}, "
          f"{args.train_steps} Adam steps per adapter\n")
    columns = ["none", "nearest bank", "generated", "trained"]
    print(markdown(summarise(rows, columns, higher_is_better=False), "test MSE", digits=4))
    ratio = [{k: r[k] / r["none"] for k in columns} for r in rows]
    print()
    print(markdown(summarise(ratio, columns, higher_is_better=False), "MSE / none", digits=4))
    m, half = mean_ci([math.log(r["generated"] / r["nearest bank"]) for r in rows])
    print(f"\npaired geometric-mean MSE ratio generated / nearest {math.exp(m):.2f} "
          f"[{math.exp(m - half):.2f}, {math.exp(m + half):.2f}]")

if __name__ == "__main__":
    main()
