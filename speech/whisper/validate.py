"""Early stopping on validation WER, and bootstrap confidence intervals over sentences.

``ValidationWER`` decodes the validation manifest (greedy) before training and every
``every`` steps, keeps the adapter tensors of the best step (lowest WER) and stops after
``patience`` evaluations without improvement; at the end of training the best tensors are
put back, so the saved adapter is the one validation chose (possibly step 0: no adapter
effect). Its state (best WER, step, tensors, history) travels in Lightning checkpoints.
"""

from __future__ import annotations

import logging
import random

import lightning as L
import torch
from whisper.model import Whisper

from lorakit.data.manifest import Utterance

from .evaluate import Scored, score, summarize, transcribe_utterances
from .train import encoder_is_adapted
from .transcribe import DecodeConfig, decode

log = logging.getLogger(__name__)


def adapter_state(model: Whisper) -> dict[str, torch.Tensor]:
    """Copies of the trainable tensors and adapter buffers (what a checkpoint keeps)."""
    out = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    out.update({n: b.detach().clone() for n, b in model.named_buffers() if ".adapters." in n})
    return out


def load_adapter_state(model: Whisper, state: dict[str, torch.Tensor]) -> None:
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    with torch.no_grad():
        for name, value in state.items():
            tensors[name].copy_(value)


class ValidationWER(L.Callback):
    """Validation WER every ``every`` steps; best-step restore; stop after ``patience``."""

    def __init__(self, utts: list[Utterance], cfg: DecodeConfig, every: int, patience: int):
        if every < 1 or patience < 1:
            raise ValueError("train: val_every and patience must be >= 1")
        self.utts, self.cfg, self.every, self.patience = utts, cfg, every, patience
        self.best, self.best_step, self.bad = float("inf"), 0, 0
        self.best_state: dict[str, torch.Tensor] = {}
        self.history: list[tuple[int, float]] = []
        self._features: list | None = None  # frozen-encoder outputs of the validation set

    def wer(self, model: Whisper) -> float:
        if encoder_is_adapted(model):
            hyps = transcribe_utterances(model, self.utts, self.cfg)
        elif self._features is None:
            self._features = []
            hyps = transcribe_utterances(model, self.utts, self.cfg, features=self._features)
        else:
            hyps = [t for f in self._features for t in decode(model, f, self.cfg)]
        return summarize(score(self.utts, hyps, self.cfg.language))["wer"]

    def _check(self, trainer, model: Whisper, log_it: bool = False) -> None:
        step = trainer.global_step
        if any(s == step for s, _ in self.history):
            return
        wer = self.wer(model)
        self.history.append((step, wer))
        if log_it:
            trainer.lightning_module.log("val_wer", wer, on_step=True, batch_size=1)
        log.info("step %d: validation WER %.4f (best %.4f)", step, wer, self.best)
        if wer < self.best:
            self.best, self.best_step, self.bad = wer, step, 0
            self.best_state = adapter_state(model)
        else:
            self.bad += 1
            if self.bad >= self.patience:
                log.info("early stop at step %d: best validation WER at step %d", step, self.best_step)
                trainer.should_stop = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module.model)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self._check(trainer, pl_module.model, log_it=True)

    def on_train_end(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module.model)
        if self.best_state:
            load_adapter_state(pl_module.model, self.best_state)

    def state_dict(self) -> dict:
        return {
            "best": self.best,
            "best_step": self.best_step,
            "bad": self.bad,
            "history": self.history,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step, self.bad = state["best"], state["best_step"], state["bad"]
        self.history, self.best_state = list(state["history"]), state["best_state"]


def bootstrap_wer(rows: list[Scored], n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of corpus WER, resampling sentences (all rows of one reference
    text move together) with replacement."""
    by_text: dict[str, list[Scored]] = {}
    for r in rows:
        by_text.setdefault(r.ref_norm, []).append(r)
    units = [(sum(r.word_errors for r in g), sum(r.ref_words for r in g)) for g in by_text.values()]
    rng = random.Random(seed)
    draws = []
    for _ in range(n):
        pick = [units[rng.randrange(len(units))] for _ in units]
        draws.append(sum(e for e, _ in pick) / max(sum(w for _, w in pick), 1))
    draws.sort()
    return draws[int(0.025 * (n - 1))], draws[int(0.975 * (n - 1))]


def group_intervals(rows: list[Scored], prefix: str = "") -> dict:
    """``{prefix}wer_<group>_ci: [low, high]`` for every group of ``rows``."""
    out = {}
    for group in sorted({r.utt.group for r in rows if r.utt.group}):
        lo, hi = bootstrap_wer([r for r in rows if r.utt.group == group])
        out[f"{prefix}wer_{group}_ci"] = [round(lo, 4), round(hi, 4)]
    return out
