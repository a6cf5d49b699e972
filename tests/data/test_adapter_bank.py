"""The shared adapter bank (``lorakit.data.adapter_bank``) on a toy domain whose items are
shifts ``t`` and whose right adapter is a known LoRA ``B(t)`` (no training, seconds): a
killed build resumes and trains only the unfinished entries, a bank's errors are one line
naming the domain's command, the generated run folder, and a report whose trained adapters
are kept across re-runs."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from safetensors.torch import load_file

from lorakit.core import inject, make_config, save_adapter, zoo
from lorakit.core.io import WEIGHTS_NAME
from lorakit.data import adapter_bank as ab


@dataclasses.dataclass(frozen=True)
class Shift:
    t: float

    @property
    def name(self) -> str:
        return f"s{self.t:+.2f}"

    @property
    def description(self) -> str:
        return f"shift {self.t:+.2f}"


@dataclasses.dataclass(frozen=True)
class ToySpec:
    tasks: int = 4
    held: int = 2
    seed: int = 0

    def check(self) -> None:
        if self.tasks < 2:
            raise ValueError("a bank needs at least 2 shifts")


def parse_shift(text: str) -> Shift:
    m = re.fullmatch(r"shift ([-+]?\d*\.?\d+)", text)
    if m is None:
        raise ValueError(f"shift {text!r}: write it as 'shift +0.25'")
    return Shift(float(m.group(1)))


def embed_shift(text: str) -> torch.Tensor:
    return torch.tensor([parse_shift(text).t])


def right_b(t: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    b1, b2 = torch.randn(64, 2, generator=g) * 0.4, torch.randn(64, 2, generator=g) * 0.4
    return t * b1 + t * t * b2


def _b(adapter) -> torch.Tensor:
    tensors = load_file(str(adapter / WEIGHTS_NAME))
    return next(v for k, v in tensors.items() if k.endswith(".B"))


class ToyItems:
    """``train`` writes the right adapter (and can be told to fail, as a kill would); the
    score is the distance of an adapter's ``B`` to the right one."""

    trained: list[str] = []  # every train call, across instances
    fail_at: int | None = None  # the call number that raises

    def __init__(self, spec, items, root):
        self.items = items

    def train(self, j, folder):
        ToyItems.trained.append(self.items[j].name)
        if len(ToyItems.trained) == ToyItems.fail_at:
            raise KeyboardInterrupt  # killed while training
        model, _, _, _ = zoo.build("linear", seed=0)
        torch.manual_seed(3)  # one A initialisation for the bank
        inject(model, make_config("lora", r=2, targets=("fc1",)))
        with torch.no_grad():
            model.fc1.adapters["default"]["weight"].B.copy_(right_b(self.items[j].t))
        save_adapter(model, folder / "adapter")
        return {"t": self.items[j].t}, "trained"

    def baselines(self, j, folder, record):
        t = self.items[j].t
        return {"zero-shot": float(right_b(t).norm()),
                "trained": float((_b(folder / "adapter") - right_b(t)).norm())}  # fmt: skip

    def run_config(self, j):
        return {"t": self.items[j].t}

    def score(self, j, run):
        return float((_b(run / "adapter") - right_b(self.items[j].t)).norm())


DOMAIN = ab.BankDomain(
    name="toy", default=False, noun="shift", title="toy", metric="distance",
    plot_label="distance to the right B", higher_is_better=False, spec_type=ToySpec,
    parse=parse_shift, embed=embed_shift, draw=lambda rng, spec: Shift(rng.randint(-4, 4) / 4),
    key=lambda s: s.name, item_json=lambda s: {"name": s.name, "description": s.description},
    prepare=ToyItems, run_config=lambda spec, s: {"t": s.t}, run_info=lambda spec: {"toy": 1},
)  # fmt: skip


@pytest.fixture()
def calls():
    ToyItems.trained, ToyItems.fail_at = [], None
    yield ToyItems.trained
    ToyItems.fail_at = None


def test_killed_build_resumes_training_only_unfinished_entries(tmp_path, calls):
    root = tmp_path / "bank"
    ToyItems.fail_at = 3
    with pytest.raises(KeyboardInterrupt):
        ab.build_bank(DOMAIN, root, ToySpec())
    bank, held = ab.draw_items(DOMAIN, ToySpec())
    first = ab.entry_dir(root, 0, bank[0]) / ab.TASK_FILE
    mtime = first.stat().st_mtime_ns
    assert not (ab.entry_dir(root, 2, bank[2]) / ab.TASK_FILE).exists()
    ToyItems.fail_at, lines = None, []
    done = ab.build_bank(DOMAIN, root, ToySpec(), echo=lines.append)
    assert calls == [s.name for s in bank[:3]] + [s.name for s in bank[2:]]  # 3rd again, then 4th
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["kept", "kept", "trained", "trained"]
    assert lines[0] == f"[1/4] {bank[0].description}: kept"
    assert first.stat().st_mtime_ns == mtime
    assert done == [ab.entry_dir(root, i, s) for i, s in enumerate(bank)]
    record = json.loads((root / ab.BANK_FILE).read_text())
    assert record["domain"] == "toy" and len(record["held_out"]) == 2
    assert json.loads(first.read_text()) == {"name": bank[0].name,
                                             "description": bank[0].description, "t": bank[0].t}  # fmt: skip
    assert not {s.name for s in bank} & {s.name for s in held}
    with pytest.raises(ValueError, match=r"other settings \(seed\)"):
        ab.build_bank(DOMAIN, root, ToySpec(seed=1))


def test_bank_errors_are_one_line_with_the_domain_command(tmp_path, calls):
    def one_line(call, *words):
        with pytest.raises(ValueError) as e:
            call()
        assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)

    root = tmp_path / "bank"
    cmd = f"`lorakit generate bank --domain toy --out {root}`"
    one_line(lambda: ab.load_bank(DOMAIN, root), "no adapter bank", cmd)
    one_line(lambda: ab.draw_items(DOMAIN, ToySpec(tasks=8, held=2)), "cannot draw 10 distinct shifts")
    ToyItems.fail_at = 1
    with pytest.raises(KeyboardInterrupt):
        ab.build_bank(DOMAIN, root, ToySpec())
    one_line(lambda: ab.load_bank(DOMAIN, root), "has no finished adapters", cmd, "(it resumes)")
    good = (root / ab.BANK_FILE).read_text()
    (root / ab.BANK_FILE).write_text(good.replace("shift ", "shift by ", 1))
    one_line(lambda: ab.load_bank(DOMAIN, root), f"{root / ab.BANK_FILE} is damaged (ValueError")
    (root / ab.BANK_FILE).write_text(good[: len(good) // 2])
    one_line(lambda: ab.load_bank(DOMAIN, root), "is damaged (JSONDecodeError")
    clip_like = dataclasses.replace(DOMAIN, default=True)  # the CLI's default: no --domain
    one_line(lambda: ab.load_bank(clip_like, tmp_path / "x"),
             f"`lorakit generate bank --out {tmp_path / 'x'}`")  # fmt: skip


def test_generate_and_report_on_a_bank(tmp_path, calls):
    root = tmp_path / "bank"
    ab.build_bank(DOMAIN, root, ToySpec(), echo=lambda _: None)
    info = ab.train_generator(DOMAIN, root, steps=400, lr=5e-3, hidden=64)
    assert info["bank"] == 4 and info["bank_error_vs_mean"] < 0.5
    bank = ab.load_bank(DOMAIN, root)

    out = tmp_path / "gen"
    run = ab.generate_adapter(DOMAIN, root, "shift +0.10", out)
    assert run == out and (out / "adapter" / WEIGHTS_NAME).is_file()
    meta = json.loads((out / "generate.json").read_text())
    near, _ = ab.nearest_entry(DOMAIN, bank, Shift(0.1))
    assert meta == {"description": "shift +0.10", "toy": 1, "bank": str(root.resolve()),
                    "nearest_bank_task": near.description}  # fmt: skip
    assert near.description == min((s for s, _ in bank.entries), key=lambda s: abs(s.t - 0.1)).description
    assert "t: 0.1" in (out / "config.yaml").read_text()
    ab.generate_adapter(DOMAIN, root, "shift +0.20", out)  # its own folder: rewritten
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and was not written by `lorakit generate`"):
        ab.generate_adapter(DOMAIN, root, "shift +0.10", foreign)

    trained_before = len(calls)
    result = ab.report(DOMAIN, root, echo=lambda _: None)
    assert len(calls) == trained_before + 2  # one adapter per held-out shift
    assert result["domain"] == "toy" and list(result["summary"]["columns"]) == ab.COLUMNS
    assert {r["task"] for r in result["rows"]} == {s.description for s in bank.held}
    for row, s in zip(result["rows"], bank.held, strict=True):
        assert row["trained"] < 1e-3 and row["zero-shot"] == pytest.approx(float(right_b(s.t).norm()))
        assert (root / "report" / "nearest_bank" / s.name / "adapter" / WEIGHTS_NAME).is_file()
    again = ab.report(DOMAIN, root, echo=lambda _: None)
    assert len(calls) == trained_before + 2  # trained adapters kept
    assert again["rows"] == result["rows"]
    assert (root / "report" / "report.md").read_text().startswith(
        "# ICM-LoRA generated toy adapters on 2 held-out shifts (bank of 4)")
