"""An ICM-LoRA adapter bank, whatever its domain: build (resumable), load, nearest entry,
generator training, generation and the held-out report (``lorakit generate``).

A bank is a folder::

    bank.json                     {["domain"], spec, tasks, held_out}: the drawn items
    tasks/NN-<name>/adapter/      one trained adapter per bank item;
    tasks/NN-<name>/task.json     written last: it marks the entry finished
    generator/                    the CVAE (``lorakit.core.generate.fit_bank_generator``)
    report/                       ``report``: trained/<name>/ (kept), one run per baseline

An *item* (a CLIP task, a Whisper condition) has a ``name`` (folder-safe) and a
``description`` (the text the generator is conditioned on). What differs per domain is a
``BankDomain``: how items are drawn, parsed, embedded and recorded, and, through the
object ``prepare`` returns (``BankItems``), how one item's adapter trains and scores.
``lorakit.vision.clip.adapter_bank`` and ``lorakit.speech.whisper.adapter_bank`` each
define one and keep their public functions as thin calls into this module.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import torch
import yaml

from lorakit.core.generate import fit_bank_generator, load_bank_generator
from lorakit.core.io import atomic_write

from . import generation_report as gr
from .runs import write_json

BANK_FILE = "bank.json"
TASK_FILE = "task.json"
RUN_INFO = "generate.json"  # marks a folder written by `lorakit generate adapter`
COLUMNS = ["zero-shot", "bank mean", "nearest bank", "generated", "trained"]


class BankItems(Protocol):
    """A domain's items (bank or held-out), ready to train and score (data made once)."""

    def train(self, j: int, folder: Path) -> tuple[dict, str]:
        """Train item ``j``'s adapter into ``folder/adapter``; ``(fields for its task.json,
        a few words for the progress line)``."""

    def baselines(self, j: int, folder: Path, record: dict) -> dict[str, float]:
        """``zero-shot`` and ``trained`` scores of item ``j`` (``folder``, ``record``: its
        trained adapter's folder and task.json)."""

    def run_config(self, j: int) -> dict | None:
        """The ``config.yaml`` of a run folder scored on item ``j`` (``None``: none)."""

    def score(self, j: int, run: Path) -> float:
        """The metric of the run folder's ``adapter/`` on item ``j``."""


@dataclass(frozen=True)
class BankDomain:
    """What a domain gives the bank."""

    name: str  # `lorakit generate bank --domain NAME`; bank.json's "domain"
    default: bool  # the CLI's default domain: no --domain, no "domain" key (its banks predate it)
    noun: str  # an item, in messages: "task", "condition"
    title: str  # the report's title: "ICM-LoRA generated {title} adapters ..."
    metric: str  # the report table's metric
    plot_label: str  # the report plot's y axis
    higher_is_better: bool
    spec_type: type  # frozen dataclass with ``tasks``, ``held``, ``seed`` and ``check()``
    parse: Callable[[str], Any]  # description -> item; one-line ValueError
    embed: Callable[[str], torch.Tensor]  # description -> condition vector (its __name__ is recorded)
    draw: Callable[[random.Random, Any], Any]  # (rng, spec) -> one random item
    key: Callable[[Any], Hashable]  # items with equal keys count as the same when drawing
    item_json: Callable[[Any], dict]  # an item as bank.json and task.json record it
    prepare: Callable[[Any, list, Path], BankItems]  # (spec, items, bank root)
    run_config: Callable[[Any, Any], dict | None]  # (spec, item) -> generated run's config.yaml
    run_info: Callable[[Any], dict]  # spec -> extra generate.json fields

    def tag(self) -> dict:
        return {} if self.default else {"domain": self.name}

    def command(self, root: Path) -> str:
        flag = "" if self.default else f" --domain {self.name}"
        return f"lorakit generate bank{flag} --out {root}"


def draw_items(domain: BankDomain, spec) -> tuple[list, list]:
    """``spec.tasks`` bank items and ``spec.held`` held-out ones, all distinct, drawn from
    ``spec.seed``."""
    rng, n = random.Random(spec.seed), spec.tasks + spec.held
    seen, out = set(), []
    for _ in range(1000 * n):
        if len(out) == n:
            break
        item = domain.draw(rng, spec)
        if domain.key(item) not in seen:
            seen.add(domain.key(item))
            out.append(item)
    else:
        raise ValueError(f"cannot draw {n} distinct {domain.noun}s")
    return out[: spec.tasks], out[spec.tasks :]


def entry_dir(root: Path, i: int, item) -> Path:
    return root / "tasks" / f"{i:02d}-{item.name}"


def _train(domain: BankDomain, items: BankItems, j: int, item, folder: Path) -> tuple[dict, str]:
    """Train entry ``j`` and write its task.json (last: it marks the entry finished)."""
    extra, note = items.train(j, folder)
    record = {**domain.item_json(item), **extra}
    write_json(folder / TASK_FILE, record)
    return record, note


def build_bank(domain: BankDomain, root: str | Path, spec,
               echo: Callable[[str], None] = print) -> list[Path]:  # fmt: skip
    """One adapter per bank item into ``root``; a re-run with the same spec keeps finished
    entries and trains the rest. Returns the entries' folders."""
    spec.check()
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"--out {root} is a file, not a folder")
    bank, held = draw_items(domain, spec)
    record = {**domain.tag(), "spec": asdict(spec), "tasks": [domain.item_json(t) for t in bank],
              "held_out": [domain.item_json(t) for t in held]}  # fmt: skip
    if (root / BANK_FILE).is_file():
        old = json.loads((root / BANK_FILE).read_text()).get("spec", {})
        if old != record["spec"]:
            diff = sorted(k for k in record["spec"] if old.get(k) != record["spec"][k])
            raise ValueError(f"{root} holds a bank built with other settings ({', '.join(diff)}); "
                             "use the same options to resume, or another --out")  # fmt: skip
    elif root.is_dir() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty and holds no bank ({BANK_FILE}); choose another --out")
    write_json(root / BANK_FILE, record)
    items = domain.prepare(spec, bank, root)
    done = []
    for i, item in enumerate(bank):
        folder = entry_dir(root, i, item)
        if (folder / TASK_FILE).is_file():
            note = "kept"
        else:
            _, note = _train(domain, items, i, item, folder)
        echo(f"[{i + 1}/{len(bank)}] {item.description}: {note}")
        done.append(folder)
    return done


@dataclass
class Bank:
    root: Path
    spec: Any
    entries: list[tuple[Any, Path]]  # finished adapters: item, entry folder
    held: list  # held-out items (never in the bank)


def load_bank(domain: BankDomain, root: str | Path) -> Bank:
    """The bank's spec, finished entries and held-out items; one-line errors for a missing,
    damaged or empty bank."""
    root = Path(root)
    if not (root / BANK_FILE).is_file():
        raise ValueError(f"no adapter bank at {root} ({BANK_FILE} is missing); build one with "
                         f"`{domain.command(root)}`")  # fmt: skip
    try:
        record = json.loads((root / BANK_FILE).read_text())
        names = {f.name for f in fields(domain.spec_type)}
        spec = domain.spec_type(**{k: v for k, v in record["spec"].items() if k in names})
        bank = [domain.parse(t["description"]) for t in record["tasks"]]
        held = [domain.parse(t["description"]) for t in record["held_out"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{root / BANK_FILE} is damaged ({type(e).__name__}: {e})") from None
    entries = [(t, entry_dir(root, i, t)) for i, t in enumerate(bank)]
    entries = [(t, d) for t, d in entries if (d / TASK_FILE).is_file()]
    if not entries:
        raise ValueError(f"the bank at {root} has no finished adapters; run "
                         f"`{domain.command(root)}` (it resumes)")  # fmt: skip
    return Bank(root, spec, entries, held)


def train_generator(domain: BankDomain, root: str | Path, **hyper) -> dict:
    """Fit the CVAE on the bank's finished adapters and save it to ``root/generator``;
    ``hyper``: ``fit_bank_generator``'s (steps, latent, hidden, beta, lr, seed)."""
    return fit_bank_generator(load_bank(domain, root), domain.embed, domain.embed.__name__, **hyper)


def nearest_entry(domain: BankDomain, bank: Bank, item) -> tuple[Any, Path]:
    """The bank entry whose condition vector is closest (Euclidean) to ``item``'s; first on
    ties."""
    c = domain.embed(item.description)
    return min(bank.entries, key=lambda e: float((domain.embed(e[0].description) - c).norm()))


def write_run(out: Path, write_adapter: Callable[[Path], object], info: dict,
              config: dict | None = None) -> Path:  # fmt: skip
    """A run folder ``out``: ``adapter/`` (written by ``write_adapter``, replacing an old
    one), ``config.yaml`` when ``config`` is given, and ``generate.json`` (``info``)."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "adapter").is_dir():
        shutil.rmtree(out / "adapter")
    write_adapter(out / "adapter")
    if config is not None:
        text = yaml.safe_dump(config, sort_keys=False)
        atomic_write(out / "config.yaml", lambda p: Path(p).write_text(text))
    write_json(out / RUN_INFO, info)
    return out


def generate_adapter(domain: BankDomain, root: str | Path, description: str,
                     out: str | Path) -> Path:  # fmt: skip
    """The generated adapter of ``description`` as a run folder ``out`` (``write_run``);
    refuses a file or a non-empty folder that ``lorakit generate`` did not write."""
    root, out = Path(root), Path(out)
    item = domain.parse(description)
    bank = load_bank(domain, root)
    gen = load_bank_generator(root, domain.embed)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / RUN_INFO).is_file():
        raise ValueError(f"{out} is not empty and was not written by `lorakit generate`; "
                         "choose another --out")  # fmt: skip
    near, _ = nearest_entry(domain, bank, item)
    info = {"description": item.description, **domain.run_info(bank.spec),
            "bank": str(root.resolve()), "nearest_bank_task": near.description}  # fmt: skip
    return write_run(out, lambda d: gen.generate(item.description, d), info,
                     domain.run_config(bank.spec, item))  # fmt: skip


def report(domain: BankDomain, root: str | Path, echo: Callable[[str], None] = print) -> dict:
    """On every held-out item, ``COLUMNS``: no adapter, the bank mean, the nearest bank
    adapter, the generated one and one trained on the item (kept across re-runs). Writes
    ``root/report/report.{json,md,png}``; returns the result with ``table`` and ``files``."""
    root = Path(root)
    bank = load_bank(domain, root)
    if not bank.held:
        raise ValueError(f"the bank at {root} has no held-out {domain.noun}s (built with --held 0)")
    gen = load_bank_generator(root, domain.embed)
    out = root / "report"
    items = domain.prepare(bank.spec, bank.held, root)
    mean_vec = torch.stack([gen.layout.read(d / "adapter") for _, d in bank.entries]).mean(0)
    rows = []
    for j, item in enumerate(bank.held):
        near, near_dir = nearest_entry(domain, bank, item)
        trained_dir = out / "trained" / item.name
        if (trained_dir / TASK_FILE).is_file():
            record = json.loads((trained_dir / TASK_FILE).read_text())
        else:
            record, _ = _train(domain, items, j, item, trained_dir)
        row = {"task": item.description, "nearest bank task": near.description,
               **items.baselines(j, trained_dir, record)}  # fmt: skip
        candidates = {
            "bank mean": lambda d: gen.layout.write(mean_vec, d),
            "nearest bank": lambda d, s=near_dir: shutil.copytree(s / "adapter", d),
            "generated": lambda d, t=item: gen.generate(t.description, d),
        }
        for name, write in candidates.items():
            run = write_run(out / name.replace(" ", "_") / item.name, write,
                            {"description": item.description, "adapter": name}, items.run_config(j))  # fmt: skip
            row[name] = items.score(j, run)
        rows.append(row)
        echo(f"[{j + 1}/{len(bank.held)}] {item.description}: " +
             ", ".join(f"{c} {row[c]:.3f}" for c in COLUMNS))  # fmt: skip
    summary = gr.summarise(rows, COLUMNS, reference="generated", higher_is_better=domain.higher_is_better)
    table = gr.markdown(summary, domain.metric)
    title = (f"ICM-LoRA generated {domain.title} adapters on {len(rows)} held-out "
             f"{domain.noun}s (bank of {len(bank.entries)})")  # fmt: skip
    result = {**domain.tag(), "bank": len(bank.entries), "spec": asdict(bank.spec), "rows": rows,
              "summary": summary}  # fmt: skip
    write_json(out / "report.json", result)
    md = f"# {title}\n\n{table}\n"
    atomic_write(out / "report.md", lambda p: Path(p).write_text(md))
    top = max(row[c] for row in rows for c in COLUMNS)  # WER may pass 1
    gr.plot(summary, out / "report.png", title, domain.plot_label, ylim=(0, max(1.05, 1.05 * top)))
    return {**result, "table": table, "files": [str(out / f"report.{e}") for e in ("json", "md", "png")]}
