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
task (its words are checked, an unknown word is an error).
"""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import yaml

from lorakit.core.generate import BANK_GENERATOR_DIR, fit_bank_generator, load_bank_generator
from lorakit.core.io import atomic_write
from lorakit.data import captions, shapes
from lorakit.data.runs import write_json

from . import pipeline

COLOURS, SHAPES, STYLES = captions.COLOURS, shapes.SHAPES, shapes.STYLES
FILLER = ("a", "an", "and", "the", "in", "style", "of", "classify", "images", "drawn")
Pair = tuple[str, str]


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


def draw_tasks(spec: BankSpec) -> tuple[list[ClipTask], list[ClipTask]]:
    """``spec.tasks`` bank tasks and ``spec.held`` held-out ones, all distinct: classes from
    the stand-in's unseen pairs, one style each."""
    rng = random.Random(spec.seed)
    pool = sorted(captions.COMBOS.unseen())
    seen, out = set(), []
    for _ in range(1000 * (spec.tasks + spec.held)):
        if len(out) == spec.tasks + spec.held:
            break
        task = ClipTask(tuple(rng.sample(pool, spec.classes)), rng.choice(STYLES))
        key = (frozenset(task.pairs), task.style)
        if key not in seen:
            seen.add(key)
            out.append(task)
    else:
        raise ValueError(f"cannot draw {spec.tasks + spec.held} distinct tasks")
    return out[: spec.tasks], out[spec.tasks :]


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

BANK_FILE = "bank.json"
TASK_FILE = "task.json"


def _tasks_json(tasks: list[ClipTask]) -> list[dict]:
    return [{"name": t.name, "description": t.description, "style": t.style,
             "classes": [captions.classname(p) for p in t.pairs]} for t in tasks]  # fmt: skip


def _task_from(d: dict) -> ClipTask:
    return parse_task(d["description"])


def entry_dir(root: Path, i: int, task: ClipTask) -> Path:
    return root / "tasks" / f"{i:02d}-{task.name}"


def build_bank(root: str | Path, spec: BankSpec, echo: Callable[[str], None] = print) -> list[Path]:
    """Train one adapter per bank task into ``root`` (resumable: see the module docstring);
    returns the finished entries' folders."""
    spec.check()
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"--out {root} is a file, not a folder")
    bank, held = draw_tasks(spec)
    record = {"spec": asdict(spec), "tasks": _tasks_json(bank), "held_out": _tasks_json(held)}
    if (root / BANK_FILE).is_file():
        old = json.loads((root / BANK_FILE).read_text())
        if old.get("spec") != record["spec"]:
            diff = sorted(k for k in record["spec"] if old.get("spec", {}).get(k) != record["spec"][k])
            raise ValueError(f"{root} holds a bank built with other settings ({', '.join(diff)}); "
                             "use the same options to resume, or another --out")  # fmt: skip
    elif root.is_dir() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty and holds no bank ({BANK_FILE}); choose another --out")
    write_json(root / BANK_FILE, record)
    done = []
    for i, task in enumerate(bank):
        folder = entry_dir(root, i, task)
        if (folder / TASK_FILE).is_file():
            echo(f"[{i + 1}/{len(bank)}] {task.description}: kept")
        else:
            metrics = pipeline.train(task_config(spec, task, root / "data" / task.name), folder)
            write_json(folder / TASK_FILE, {**_tasks_json([task])[0], "accuracy": metrics["accuracy"],
                                            "zero_shot_accuracy": metrics["zero_shot_accuracy"]})  # fmt: skip
            echo(f"[{i + 1}/{len(bank)}] {task.description}: accuracy {metrics['accuracy']:.3f} "
                 f"(zero-shot {metrics['zero_shot_accuracy']:.3f})")  # fmt: skip
        done.append(folder)
    return done


@dataclass
class Bank:
    root: Path
    spec: BankSpec
    entries: list[tuple[ClipTask, Path]]  # finished adapters: task, run folder
    held: list[ClipTask]


def load_bank(root: str | Path) -> Bank:
    """The bank's spec, its finished entries and held-out tasks; one-line errors for a
    missing or empty bank."""
    root = Path(root)
    if not (root / BANK_FILE).is_file():
        raise ValueError(f"no adapter bank at {root} ({BANK_FILE} is missing); build one with "
                         f"`lorakit generate bank --out {root}`")  # fmt: skip
    try:
        record = json.loads((root / BANK_FILE).read_text())
        names = {f.name for f in fields(BankSpec)}
        spec = BankSpec(**{k: v for k, v in record["spec"].items() if k in names})
        tasks = [_task_from(t) for t in record["tasks"]]
        held = [_task_from(t) for t in record["held_out"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{root / BANK_FILE} is damaged ({type(e).__name__}: {e})") from None
    entries = [(t, entry_dir(root, i, t)) for i, t in enumerate(tasks)]
    entries = [(t, d) for t, d in entries if (d / TASK_FILE).is_file()]
    if not entries:
        raise ValueError(f"the bank at {root} has no finished adapters; run "
                         f"`lorakit generate bank --out {root}` (it resumes)")  # fmt: skip
    return Bank(root, spec, entries, held)


# --------------------------------------------------------------------------- generator

GENERATOR_DIR = BANK_GENERATOR_DIR


def train_generator(root: str | Path, steps: int = 1500, latent: int = 8, hidden: int = 128,
                    beta: float = 1.0, lr: float = 2e-3, seed: int = 0) -> dict:  # fmt: skip
    """Fit the CVAE on the bank's finished adapters (condition ``embed_task``) and save it to
    ``root/generator``; returns its summary (``fit_bank_generator``)."""
    return fit_bank_generator(load_bank(root), embed_task, "embed_task", steps=steps, latent=latent,
                              hidden=hidden, beta=beta, lr=lr, seed=seed)  # fmt: skip


def _generator(root: Path):
    return load_bank_generator(root, embed_task)


def _write_run(out: Path, cfg: dict, write_adapter: Callable[[Path], object], info: dict) -> Path:
    """A clip run folder ``out`` (``config.yaml``, ``adapter/``, ``generate.json``) that
    ``lorakit eval clip --run`` reads; refuses a non-empty folder it did not write."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "generate.json").is_file():
        raise ValueError(f"{out} is not empty and was not written by `lorakit generate`; "
                         "choose another --out")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    if (out / "adapter").is_dir():
        shutil.rmtree(out / "adapter")
    write_adapter(out / "adapter")
    text = yaml.safe_dump(cfg, sort_keys=False)
    atomic_write(out / "config.yaml", lambda p: Path(p).write_text(text))
    write_json(out / "generate.json", info)
    return out


def nearest_entry(bank: Bank, task: ClipTask) -> tuple[ClipTask, Path]:
    """The bank entry whose condition is closest (Euclidean) to ``task``'s; first on ties."""
    c = embed_task(task.description)
    return min(bank.entries, key=lambda e: float((embed_task(e[0].description) - c).norm()))


def generate_adapter(root: str | Path, description: str, out: str | Path) -> Path:
    """The generated adapter of ``description`` as a clip run folder ``out``: ``out/adapter``
    for ``load_adapter``, ``config.yaml`` naming the task's generated data for ``lorakit
    eval clip --run out``."""
    root, out = Path(root), Path(out)
    task = parse_task(description)
    bank = load_bank(root)
    gen = _generator(root)
    near, _ = nearest_entry(bank, task)
    return _write_run(out, task_config(bank.spec, task, None), lambda d: gen.generate(description, d),
                      {"description": task.description, "bank": str(root.resolve()),
                       "nearest_bank_task": near.description})  # fmt: skip


# --------------------------------------------------------------------------- report

COLUMNS = ["zero-shot", "bank mean", "nearest bank", "generated", "trained"]


def report(root: str | Path, echo: Callable[[str], None] = print) -> dict:
    """On every held-out task: accuracy of the generated adapter, of no adapter, of the bank
    mean, of the nearest bank adapter and of an adapter trained on the task (resumable:
    trained adapters are kept). Writes ``root/report/report.{json,md,png}``."""
    from lorakit.data import generation_report as gr

    root = Path(root)
    bank = load_bank(root)
    if not bank.held:
        raise ValueError(f"the bank at {root} has no held-out tasks (built with --held 0)")
    gen = _generator(root)
    out = root / "report"
    mean_vec = torch.stack([gen.layout.read(d / "adapter") for _, d in bank.entries]).mean(0)
    rows = []
    for k, task in enumerate(bank.held):
        data = root / "data" / task.name
        cfg = task_config(bank.spec, task, data)
        trained_dir = out / "trained" / task.name
        if (trained_dir / TASK_FILE).is_file():
            trained = json.loads((trained_dir / TASK_FILE).read_text())
        else:
            m = pipeline.train(cfg, trained_dir)
            trained = {"accuracy": m["accuracy"], "zero_shot_accuracy": m["zero_shot_accuracy"]}
            write_json(trained_dir / TASK_FILE, {**_tasks_json([task])[0], **trained})
        near, near_dir = nearest_entry(bank, task)
        runs = {
            "bank mean": lambda d: gen.layout.write(mean_vec, d),
            "nearest bank": lambda d, s=near_dir: shutil.copytree(s / "adapter", d),
            "generated": lambda d, t=task: gen.generate(t.description, d),
        }
        row = {"task": task.description, "nearest bank task": near.description,
               "zero-shot": trained["zero_shot_accuracy"], "trained": trained["accuracy"]}  # fmt: skip
        for name, write in runs.items():
            run = _write_run(out / name.replace(" ", "_") / task.name, cfg, write,
                             {"description": task.description, "adapter": name})  # fmt: skip
            row[name] = pipeline.evaluate(run, {})["accuracy"]
        rows.append(row)
        echo(f"[{k + 1}/{len(bank.held)}] {task.description}: " +
             ", ".join(f"{c} {row[c]:.3f}" for c in COLUMNS))  # fmt: skip
    summary = gr.summarise(rows, COLUMNS, reference="generated", higher_is_better=True)
    table = gr.markdown(summary, "accuracy")
    title = (f"ICM-LoRA generated CLIP adapters on {len(rows)} held-out tasks "
             f"(bank of {len(bank.entries)})")  # fmt: skip
    result = {"bank": len(bank.entries), "spec": asdict(bank.spec), "rows": rows,
              "summary": summary}  # fmt: skip
    write_json(out / "report.json", result)
    md = f"# {title}\n\n{table}\n"
    atomic_write(out / "report.md", lambda p: Path(p).write_text(md))
    gr.plot(summary, out / "report.png", title, "test accuracy (top-1)", ylim=(0, 1.05))
    return {**result, "table": table, "files": [str(out / f"report.{e}") for e in ("json", "md", "png")]}

