"""A bank of CLIP adapters for ICM-LoRA-style generation (``lorakit.core.generate``).

A *task* is a few colour-shape classes drawn in one rendering style, on the pretrained CLIP
stand-in; its description names them, e.g. ``"red hexagon, blue cross, yellow diamond in
sketch style"``. The classes come from the pairs the stand-in never saw in pretraining
(``captions.COMBOS.unseen()``), so zero-shot accuracy is imperfect and an adapter helps.

    spec = BankSpec(tasks=12, held=6)
    build_bank(root, spec)            # root/bank.json, root/tasks/NN/{adapter/, task.json, ...}
    train_generator(root)             # root/generator/generator.safetensors + template/
    generate_adapter(root, "red hexagon, blue cross in dark style", out)   # out/adapter/
    report(root)                      # root/report/report.{json,md,png}

Every bank entry is an ordinary ``lorakit train clip`` run folder (``lorakit eval clip
--run`` reads it), trained with the same ``trainer.seed``, so all bank adapters share one
LoRA ``A`` initialisation (why: ``lorakit.core.generate``'s docstring). ``task.json`` is
written last and marks an entry finished: a killed ``build_bank`` keeps the finished
entries and resumes the interrupted one from its checkpoint.

The condition is ``embed_task``: multi-hot colours, shapes and the style of the described
task (its words are checked, an unknown word is an error). The bank itself (build, load,
generation, report) is ``lorakit.data.adapter_bank``; this module is its CLIP ``DOMAIN``.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lorakit.core.generate import BANK_GENERATOR_DIR
from lorakit.data import adapter_bank as common
from lorakit.data import captions, shapes

from . import pipeline

COLOURS, SHAPES, STYLES = captions.COLOURS, shapes.SHAPES, shapes.STYLES
FILLER = ("a", "an", "and", "the", "in", "style", "of", "classify", "images", "drawn")
Pair = tuple[str, str]
UNSEEN = sorted(captions.COMBOS.unseen())  # the classes tasks draw from


@dataclass(frozen=True)
class ClipTask:
    """Classes (colour, shape) drawn in ``style``."""

    pairs: tuple[Pair, ...]
    style: str

    @property
    def description(self) -> str:
        return f"{', '.join(captions.classname(p) for p in self.pairs)} in {self.style} style"

    @property
    def name(self) -> str:
        return "-".join([self.style, *(f"{c}_{s}" for c, s in self.pairs)])


def parse_task(text: str) -> ClipTask:
    """The task a description names: ``<colour> <shape>`` pairs and one style (default
    ``plain``); other words may only be ``FILLER``. Anything else is a one-line error."""
    words = re.findall(r"[a-z]+|[^a-z\s,;.]+", text.lower())
    unknown = [w for w in words if w not in (*COLOURS, *SHAPES, *STYLES, *FILLER)]
    if unknown:
        raise ValueError(
            f"task description {text!r}: unknown word {unknown[0]!r}; use colours "
            f"({', '.join(COLOURS)}), shapes ({', '.join(SHAPES)}), styles "
            f"({', '.join(STYLES)})"
        )
    pairs, styles, i = [], [], 0
    while i < len(words):
        w = words[i]
        if w in COLOURS and i + 1 < len(words) and words[i + 1] in SHAPES:
            pairs.append((w, words[i + 1]))
            i += 2
            continue
        if w in STYLES:
            styles.append(w)
        elif w in COLOURS or w in SHAPES:
            raise ValueError(f"task description {text!r}: {w!r} is not part of a "
                             "'<colour> <shape>' class such as 'red circle'")  # fmt: skip
        i += 1
    if len(pairs) < 2:
        raise ValueError(f"task description {text!r}: name at least 2 classes such as "
                         "'red circle, blue square'")  # fmt: skip
    if len(set(pairs)) != len(pairs):
        raise ValueError(f"task description {text!r}: a class is named twice")
    if len(set(styles)) > 1:
        raise ValueError(f"task description {text!r}: more than one style ({', '.join(styles)})")
    return ClipTask(tuple(pairs), styles[0] if styles else "plain")


def embed_task(text: str) -> torch.Tensor:
    """The condition of a description: ``(len(COLOURS) + len(SHAPES) + len(STYLES),)``
    multi-hot of the colours, the shapes and the style it names."""
    task = parse_task(text)
    out = torch.zeros(len(COLOURS) + len(SHAPES) + len(STYLES))
    for c, s in task.pairs:
        out[COLOURS.index(c)] = 1.0
        out[len(COLOURS) + SHAPES.index(s)] = 1.0
    out[len(COLOURS) + len(SHAPES) + STYLES.index(task.style)] = 1.0
    return out


@dataclass(frozen=True)
class BankSpec:
    """What a bank is: its tasks (drawn from ``seed``) and how each adapter trains."""

    tasks: int = 12  # bank adapters
    held: int = 6  # held-out tasks for the report (never in the bank)
    classes: int = 3  # classes per task
    seed: int = 0  # draws the tasks; the trainer seed (one shared A init) of every adapter
    steps: int = 60  # optimizer steps per adapter
    shots: int = 8
    lr: float = 1e-2
    rank: int = 2
    train_per_class: int = 12
    test_per_class: int = 20
    size: int = 32

    def check(self) -> None:
        if self.tasks < 2:
            raise ValueError(f"a bank needs at least 2 tasks, got --tasks {self.tasks}")
        if self.held < 0 or self.classes < 2 or self.steps < 1 or self.rank < 1:
            raise ValueError("--held must be >= 0, --classes >= 2, --steps >= 1, --rank >= 1")
        if self.shots >= self.train_per_class:
            raise ValueError("--shots must be below train_per_class")


def _draw_task(rng: random.Random, spec: BankSpec) -> ClipTask:
    """``spec.classes`` of the stand-in's unseen pairs, one style."""
    return ClipTask(tuple(rng.sample(UNSEEN, spec.classes)), rng.choice(STYLES))


def draw_tasks(spec: BankSpec) -> tuple[list[ClipTask], list[ClipTask]]:
    """``spec.tasks`` bank tasks and ``spec.held`` held-out ones, all distinct (the same
    classes in another order count as the same task)."""
    return common.draw_items(DOMAIN, spec)


def task_config(spec: BankSpec, task: ClipTask, data_root: Path | None) -> dict:
    """The ``lorakit train clip`` config of ``task`` (data generated into ``data_root``;
    ``None``: the run folder's ``data/``)."""
    cfg = copy.deepcopy(pipeline.DEFAULTS)
    cfg["data"].update(
        root=None if data_root is None else str(data_root), shots=spec.shots, seed=1,
        generate={"classes": [captions.classname(p) for p in task.pairs], "style": task.style,
                  "train_per_class": spec.train_per_class,
                  "test_per_class": spec.test_per_class, "size": spec.size,
                  "seed": sum(map(ord, task.name)) % 10_000},
    )  # fmt: skip
    cfg["adapter"].update(r=spec.rank, alpha=float(spec.rank), dropout=0.0)
    cfg["optim"].update(lr=spec.lr, batch_size=24)
    cfg["trainer"] = {"max_steps": spec.steps, "seed": spec.seed, "accelerator": "cpu",
                      "progress": False, "log_every": min(10, spec.steps),
                      "checkpoint_every": 20}  # fmt: skip
    cfg["runtime"] = {"threads": 1}
    return cfg


# --------------------------------------------------------------------------- the bank


def _task_json(t: ClipTask) -> dict:
    return {"name": t.name, "description": t.description, "style": t.style,
            "classes": [captions.classname(p) for p in t.pairs]}  # fmt: skip


class ClipTasks:
    """Tasks ready to train and score (``lorakit.data.adapter_bank.BankItems``): task ``j``'s
    data is generated on first use into ``root/data/<name>``; every adapter is a ``lorakit
    train clip`` run folder, whose metrics hold its accuracy and zero-shot accuracy."""

    def __init__(self, spec: BankSpec, tasks: list[ClipTask], root: Path):
        self.spec, self.tasks, self.root = spec, tasks, root

    def run_config(self, j: int) -> dict:
        return task_config(self.spec, self.tasks[j], self.root / "data" / self.tasks[j].name)

    def train(self, j: int, folder: Path) -> tuple[dict, str]:
        m = pipeline.train(self.run_config(j), folder)
        return ({"accuracy": m["accuracy"], "zero_shot_accuracy": m["zero_shot_accuracy"]},
                f"accuracy {m['accuracy']:.3f} (zero-shot {m['zero_shot_accuracy']:.3f})")  # fmt: skip

    def baselines(self, j: int, folder: Path, record: dict) -> dict[str, float]:
        return {"zero-shot": record["zero_shot_accuracy"], "trained": record["accuracy"]}

    def score(self, j: int, run: Path) -> float:
        return pipeline.evaluate(run, {})["accuracy"]


DOMAIN = common.BankDomain(
    name="clip", default=True, noun="task", title="CLIP", metric="accuracy",
    plot_label="test accuracy (top-1)", higher_is_better=True, spec_type=BankSpec,
    parse=parse_task, embed=embed_task, draw=_draw_task,
    key=lambda t: (frozenset(t.pairs), t.style), item_json=_task_json, prepare=ClipTasks,
    run_config=lambda spec, task: task_config(spec, task, None), run_info=lambda spec: {},
)  # fmt: skip
BANK_FILE, TASK_FILE, COLUMNS = common.BANK_FILE, common.TASK_FILE, common.COLUMNS
GENERATOR_DIR = BANK_GENERATOR_DIR
Bank = common.Bank
entry_dir = common.entry_dir


def build_bank(root: str | Path, spec: BankSpec, echo: Callable[[str], None] = print) -> list[Path]:
    """Train one adapter per bank task into ``root`` (resumable: see the module docstring);
    returns the finished entries' folders."""
    return common.build_bank(DOMAIN, root, spec, echo)


def load_bank(root: str | Path) -> Bank:
    """The bank's spec, its finished entries and held-out tasks; one-line errors for a
    missing or empty bank."""
    return common.load_bank(DOMAIN, root)


def train_generator(root: str | Path, steps: int = 1500, latent: int = 8, hidden: int = 128,
                    beta: float = 1.0, lr: float = 2e-3, seed: int = 0) -> dict:  # fmt: skip
    """Fit the CVAE on the bank's finished adapters (condition ``embed_task``) and save it to
    ``root/generator``; returns its summary (``fit_bank_generator``)."""
    return common.train_generator(DOMAIN, root, steps=steps, latent=latent, hidden=hidden,
                                  beta=beta, lr=lr, seed=seed)  # fmt: skip


def nearest_entry(bank: Bank, task: ClipTask) -> tuple[ClipTask, Path]:
    """The bank entry whose condition is closest (Euclidean) to ``task``'s; first on ties."""
    return common.nearest_entry(DOMAIN, bank, task)


def generate_adapter(root: str | Path, description: str, out: str | Path) -> Path:
    """The generated adapter of ``description`` as a clip run folder ``out``: ``out/adapter``
    for ``load_adapter``, ``config.yaml`` naming the task's generated data for ``lorakit
    eval clip --run out``."""
    return common.generate_adapter(DOMAIN, root, description, out)


def report(root: str | Path, echo: Callable[[str], None] = print) -> dict:
    """On every held-out task: accuracy of the generated adapter, of no adapter, of the bank
    mean, of the nearest bank adapter and of an adapter trained on the task (resumable:
    trained adapters are kept). Writes ``root/report/report.{json,md,png}``."""
    return common.report(DOMAIN, root, echo)
