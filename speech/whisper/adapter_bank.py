"""A bank of Whisper adapters for ICM-LoRA-style generation (``lorakit.core.generate``).

A *condition* is how the speech sounds: a voice pitch shift (semitones, duration kept), a
tempo rate (> 1 faster, pitch kept) and white noise at an SNR (dB), applied in that order
to the offline espeak-ng adult speech (``lorakit.data.speech``, ``lorakit.data.audio``).
Its description reads ``"voice pitch +2.5 semitones, tempo 1.20, noise 12 dB SNR"``.

    spec = WhisperBankSpec(tasks=12, held=4)
    build_bank(root, spec)            # root/bank.json, root/tasks/NN-<name>/{adapter/, task.json}
    train_generator(root)             # root/generator/ (the CVAE, condition embed_condition)
    generate_adapter(root, "voice pitch +1 semitones, tempo 1.1, noise 20 dB SNR", out)
    report(root)                      # root/report/report.{json,md,png}: WER per adapter

The condition vector (``embed_condition``) is the three values normalised to [-1, 1] by
``RANGES`` (pitch -5..5 semitones, tempo 0.7..1.5, SNR 0..30 dB); conditions are drawn
uniformly in those ranges (rounded: 0.5 semitone, 0.05 tempo, 1 dB), bank and held-out all
distinct. Every condition trains on the same ``train_sentences`` and is scored on the same
``test_sentences`` (no sentence in both), rendered under that condition.

Each adapter: LoRA of rank ``rank`` on the query/value of the self-attention and the query
of the cross-attention of the last ``layers`` decoder blocks (the encoder stays the
pretrained one, so its outputs are computed once per utterance), ``steps`` Adam steps,
the LoRA ``A`` initialisation seeded by ``seed`` for the whole bank (why:
``lorakit.core.generate``). ``task.json`` marks an entry finished: a re-run keeps finished
entries. The bank itself (build, load, generation, report) is ``lorakit.data.adapter_bank``;
this module is its Whisper ``DOMAIN``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import soundfile as sf
import torch

from lorakit.core import inject, load_adapter, make_config, save_adapter
from lorakit.core.generate import BANK_GENERATOR_DIR
from lorakit.data import adapter_bank as common
from lorakit.data.audio import SAMPLE_RATE, load_audio, pitch_shift, time_stretch
from lorakit.data.manifest import Utterance, read_manifest
from lorakit.data.speech import SplitSpec, generate_corpus

from .continual import DEFAULTS as TASK_DEFAULTS
from .continual import WhisperTasks
from .transcribe import DecodeConfig

RANGES = {"semitones": (-5.0, 5.0), "tempo": (0.7, 1.5), "snr_db": (0.0, 30.0)}
STEPS = {"semitones": 0.5, "tempo": 0.05, "snr_db": 1.0}  # rounding of drawn conditions
_DESC = re.compile(r"pitch\s*([-+]?\d*\.?\d+)\s*semitones?.*?tempo\s*(\d*\.?\d+).*?"
                   r"noise\s*(\d*\.?\d+)\s*db", re.IGNORECASE | re.DOTALL)  # fmt: skip


@dataclass(frozen=True)
class Condition:
    semitones: float
    tempo: float
    snr_db: float

    @property
    def description(self) -> str:
        return (f"voice pitch {self.semitones:+.1f} semitones, tempo {self.tempo:.2f}, "
                f"noise {self.snr_db:.0f} dB SNR")  # fmt: skip

    @property
    def name(self) -> str:
        return f"p{self.semitones:+.1f}_t{self.tempo:.2f}_n{self.snr_db:.0f}"


def parse_condition(text: str) -> Condition:
    """The condition a description names (``"voice pitch <semitones> semitones, tempo
    <rate>, noise <snr> dB SNR"``); outside ``RANGES`` or unreadable: a one-line error."""
    m = _DESC.search(text)
    if m is None:
        raise ValueError(f"condition {text!r}: write it as 'voice pitch +2 semitones, tempo "
                         "1.2, noise 10 dB SNR'")  # fmt: skip
    cond = Condition(*(float(g) for g in m.groups()))
    for key, (lo, hi) in RANGES.items():
        v = getattr(cond, key)
        if not lo <= v <= hi:
            raise ValueError(f"condition {text!r}: {key} {v:g} is outside [{lo:g}, {hi:g}]")
    return cond


def embed_condition(text: str) -> torch.Tensor:
    """``(3,)``: pitch, tempo and SNR of the description, each mapped from ``RANGES`` to
    [-1, 1]."""
    cond = parse_condition(text)
    return torch.tensor([2 * (getattr(cond, k) - lo) / (hi - lo) - 1
                         for k, (lo, hi) in RANGES.items()])  # fmt: skip


def render(wave: torch.Tensor, cond: Condition, noise_seed: int) -> torch.Tensor:
    """``wave`` under ``cond``: pitch shift, then time stretch, then white noise at
    ``cond.snr_db`` (relative to the shifted speech's power; seeded by ``noise_seed``)."""
    wave = pitch_shift(wave, cond.semitones)
    if cond.tempo != 1:
        wave = time_stretch(wave, cond.tempo)
    gen = torch.Generator().manual_seed(noise_seed)
    power = wave.pow(2).mean() / 10 ** (cond.snr_db / 10)
    return wave + torch.randn(wave.shape, generator=gen) * power.sqrt()


@dataclass(frozen=True)
class WhisperBankSpec:
    """What a Whisper bank is: its conditions (drawn from ``seed``) and how each adapter trains."""

    tasks: int = 12  # bank adapters
    held: int = 4  # held-out conditions for the report (never in the bank)
    seed: int = 0  # draws the conditions; the shared LoRA A init
    steps: int = 30  # Adam steps per adapter
    batch_size: int = 4
    lr: float = 3e-3
    rank: int = 2
    layers: int = 2  # adapted decoder blocks (the last ones)
    train_sentences: int = 12
    test_sentences: int = 6
    model: str = "tiny.en-ct2"

    def check(self) -> None:
        if self.tasks < 2:
            raise ValueError(f"a bank needs at least 2 conditions, got --tasks {self.tasks}")
        if self.held < 0 or self.steps < 1 or self.rank < 1 or self.layers < 1:
            raise ValueError("--held must be >= 0, --steps >= 1, --rank >= 1, layers >= 1")


def _draw_condition(rng: random.Random, spec: WhisperBankSpec) -> Condition:
    """Uniform in ``RANGES``, rounded to ``STEPS``."""
    vals = [round(rng.uniform(lo, hi) / STEPS[k]) * STEPS[k] for k, (lo, hi) in RANGES.items()]
    return Condition(*(round(v, 2) for v in vals))


def draw_conditions(spec: WhisperBankSpec) -> tuple[list[Condition], list[Condition]]:
    """``spec.tasks`` bank conditions and ``spec.held`` held-out ones, all distinct."""
    return common.draw_items(DOMAIN, spec)


class ConditionTasks(WhisperTasks):
    """``WhisperTasks`` (encoder cache, batches, loss, WER) whose tasks are ``Condition``s."""

    def __init__(self, spec: WhisperBankSpec, conditions: list[Condition], root: Path):
        self.spec, self.conditions, self.root = spec, list(conditions), Path(root)
        self.cfg = {**TASK_DEFAULTS, "model": spec.model, "dir": str(self.root / "speech")}
        self.task_names = [c.name for c in conditions]
        self.dcfg = DecodeConfig(batch_size=8, sample_len=int(self.cfg["sample_len"]),
                                 max_duration=float(self.cfg["max_duration"]))  # fmt: skip
        self.splits = []

    def prepare(self, out: Path | None = None) -> None:
        made = generate_corpus(self.root / "speech", {
            "train": SplitSpec(self.spec.train_sentences, ("adult",)),
            "test": SplitSpec(self.spec.test_sentences, ("adult",)),
        }, seed=0)  # fmt: skip
        rows = {s: read_manifest(p) for s, p in made.items()}
        self.splits = [{s: [self._render(u, c) for u in utts] for s, utts in rows.items()}
                       for c in self.conditions]  # fmt: skip
        self._audio = {u.id: u.audio for t in self.splits for s in t.values() for u in s}

    def _render(self, u: Utterance, cond: Condition) -> Utterance:
        path = self.root / "audio" / cond.name / f"{u.id}.wav"
        if not path.is_file():
            seed = int(hashlib.sha1(f"{u.id}-{cond.name}".encode()).hexdigest()[:8], 16)
            wave = render(load_audio(u.audio), cond, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp.wav")
            sf.write(tmp, wave.clamp(-1, 1).numpy(), SAMPLE_RATE)
            tmp.replace(path)
        return replace(u, audio=path, group=cond.name, id=f"{u.id}-{cond.name}")

    def targets(self, model) -> tuple[str, ...]:
        n = model.dims.n_text_layer
        blocks = "|".join(str(i) for i in range(max(0, n - self.spec.layers), n))
        return (rf"decoder\.blocks\.({blocks})\.attn\.(query|value)",
                rf"decoder\.blocks\.({blocks})\.cross_attn\.query")  # fmt: skip

    def adapted(self, adapter: Path | None = None):
        """The pretrained model, with ``adapter`` loaded (``None``: none)."""
        model = self.build_model(self.spec.seed)
        if adapter is not None:
            load_adapter(model, adapter)
        return model.eval()

    def train_adapter(self, j: int, out: Path) -> Path:
        """LoRA trained on condition ``j``'s train split; saved to ``out``."""
        model = self.build_model(self.spec.seed)
        torch.manual_seed(self.spec.seed)  # one A initialisation for the whole bank
        r = self.spec.rank
        inject(model, make_config("lora", r=r, alpha=float(r), dropout=0.0,
                                  targets=self.targets(model)))  # fmt: skip
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.spec.lr)
        loader, _ = self.batches([j], self.spec.steps, self.spec.batch_size, self.spec.seed)
        model.train()
        for batch in loader:
            opt.zero_grad()
            self.loss(model, batch).backward()
            opt.step()
        return save_adapter(model.eval(), out)

    def wer(self, j: int, adapter: Path | None) -> float:
        return self.evaluate(self.adapted(adapter), j, "test")

    # ``lorakit.data.adapter_bank.BankItems``: what the shared bank code calls
    def train(self, j: int, folder: Path) -> tuple[dict, str]:
        self.train_adapter(j, folder / "adapter")
        return {}, "trained"

    def baselines(self, j: int, folder: Path, record: dict) -> dict[str, float]:
        return {"zero-shot": self.wer(j, None), "trained": self.wer(j, folder / "adapter")}

    def run_config(self, j: int) -> None:
        return None

    def score(self, j: int, run: Path) -> float:
        return self.wer(j, run / "adapter")


# --------------------------------------------------------------------------- the bank


def _json(cond: Condition) -> dict:
    return {"name": cond.name, "description": cond.description, **asdict(cond),
            "condition": embed_condition(cond.description).tolist()}  # fmt: skip


def _prepare(spec: WhisperBankSpec, conds: list[Condition], root: Path) -> ConditionTasks:
    """The conditions' speech rendered (once, under ``root/audio``), ready to train."""
    tasks = ConditionTasks(spec, conds, root)
    tasks.prepare()
    return tasks


DOMAIN = common.BankDomain(
    name="whisper", default=False, noun="condition", title="Whisper", metric="WER",
    plot_label="test WER (lower is better)", higher_is_better=False, spec_type=WhisperBankSpec,
    parse=parse_condition, embed=embed_condition, draw=_draw_condition, key=lambda c: c.name,
    item_json=_json, prepare=_prepare, run_config=lambda spec, cond: None,
    run_info=lambda spec: {"model": spec.model},
)  # fmt: skip
BANK_FILE, TASK_FILE, COLUMNS = common.BANK_FILE, common.TASK_FILE, common.COLUMNS
GENERATOR_DIR = BANK_GENERATOR_DIR
WhisperBank = common.Bank
entry_dir = common.entry_dir


def build_bank(root: str | Path, spec: WhisperBankSpec,
               echo: Callable[[str], None] = print) -> list[Path]:  # fmt: skip
    """One adapter per bank condition into ``root`` (resumable); the finished entries."""
    return common.build_bank(DOMAIN, root, spec, echo)


def is_whisper_bank(root: str | Path) -> bool:
    path = Path(root) / BANK_FILE
    return path.is_file() and json.loads(path.read_text()).get("domain") == "whisper"


def load_bank(root: str | Path) -> WhisperBank:
    return common.load_bank(DOMAIN, root)


def train_generator(root: str | Path, steps: int = 1500, latent: int = 8, hidden: int = 128,
                    beta: float = 1.0, lr: float = 2e-3, seed: int = 0) -> dict:  # fmt: skip
    """Fit the CVAE on the bank (condition ``embed_condition``); saved to ``root/generator``."""
    return common.train_generator(DOMAIN, root, steps=steps, latent=latent, hidden=hidden,
                                  beta=beta, lr=lr, seed=seed)  # fmt: skip


def nearest_entry(bank: WhisperBank, cond: Condition) -> tuple[Condition, Path]:
    """The bank entry whose condition vector is closest (Euclidean); first on ties."""
    return common.nearest_entry(DOMAIN, bank, cond)


def generate_adapter(root: str | Path, description: str, out: str | Path) -> Path:
    """The generated adapter of ``description``: ``out/adapter`` (``load_adapter`` into the
    bank's Whisper model) and ``out/generate.json``."""
    return common.generate_adapter(DOMAIN, root, description, out)


def report(root: str | Path, echo: Callable[[str], None] = print) -> dict:
    """On every held-out condition: WER of the generated adapter, of no adapter, of the bank
    mean, of the nearest bank adapter and of an adapter trained on the condition (kept
    across re-runs). Writes ``root/report/report.{json,md,png}``."""
    return common.report(DOMAIN, root, echo)
