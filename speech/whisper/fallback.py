"""Whisper's temperature fallback, shared by both engines (openai-whisper and CTranslate2).

A greedy transcript is *degenerate* when it repeats itself or the decoder was unsure of it:

    compression_ratio(text) = len(utf8(text)) / len(zlib(utf8(text)))  >  2.4   (a loop)
    avg_logprob = (sum_t log p(y_t | y_<t, audio)) / (len(y) + 1)          < -1.0  (a guess)

Degenerate utterances are decoded again at rising temperature ``T = 0.2, 0.4, ..., 1.0``
(sampling ``p^(1/T)``, ``best_of`` draws, the most likely kept) until one is not degenerate.
If none passes, the attempt with the highest ``avg_logprob`` among those under the
compression threshold is kept (else the highest overall). These are the thresholds and the
schedule of Whisper's own ``transcribe`` (Radford et al. 2022, section 4.5); sampling is
seeded, so a run repeats exactly.

    texts = decode_with_fallback(run_at, n, cfg)   # run_at(indices, T) -> [Attempt, ...]
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


def compression_ratio(text: str) -> float:
    """``len(bytes) / len(zlib(bytes))``: about 1-2 for speech, higher for loops."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


@dataclass(frozen=True)
class Attempt:
    """One decoding of one utterance at ``temperature``."""

    text: str
    avg_logprob: float
    temperature: float = 0.0

    @property
    def compression_ratio(self) -> float:
        return compression_ratio(self.text)


@dataclass(frozen=True)
class FallbackRule:
    """When an attempt is degenerate, and the temperatures to retry at (None = off)."""

    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    temperature_step: float = 0.2

    def __post_init__(self):
        if not 0.0 < self.temperature_step <= 1.0:
            raise ValueError(
                f"eval.temperature_step must be in (0, 1], got {self.temperature_step}"
            )

    def temperatures(self) -> list[float]:
        """``0, step, 2 step, ..., 1.0`` (the first is greedy or beam search)."""
        n = int(1.0 / self.temperature_step + 1e-9)
        return [round(i * self.temperature_step, 6) for i in range(n + 1)]

    def too_repetitive(self, a: Attempt) -> bool:
        thr = self.compression_ratio_threshold
        return thr is not None and a.compression_ratio > thr

    def degenerate(self, a: Attempt) -> bool:
        low = self.logprob_threshold is not None and a.avg_logprob < self.logprob_threshold
        return self.too_repetitive(a) or low


def pick(attempts: list[Attempt], rule: FallbackRule) -> Attempt:
    """The first non-degenerate attempt; else the most likely one that does not loop; else
    the most likely one."""
    for a in attempts:
        if not rule.degenerate(a):
            return a
    calm = [a for a in attempts if not rule.too_repetitive(a)]
    return max(calm or attempts, key=lambda a: a.avg_logprob)


def decode_with_fallback(
    run_at: Callable[[list[int], float], list[Attempt]],
    n: int,
    rule: FallbackRule | None,
) -> list[str]:
    """Texts of ``n`` utterances. ``run_at(indices, T)`` decodes the utterances ``indices``
    at temperature ``T`` (``T = 0``: the engine's greedy or beam search) and returns one
    ``Attempt`` per index. ``rule`` None: one pass at ``T = 0``, no guard."""
    if rule is None:
        return [a.text for a in run_at(list(range(n)), 0.0)]
    tried: list[list[Attempt]] = [[] for _ in range(n)]
    todo = list(range(n))
    for t in rule.temperatures():
        if not todo:
            break
        if t > 0:
            log.info("temperature fallback: %d utterance(s) decoded again at T=%.1f", len(todo), t)
        for i, a in zip(todo, run_at(todo, t), strict=True):
            tried[i].append(a)
        todo = [i for i in todo if rule.degenerate(tried[i][-1])]
    return [pick(a, rule).text for a in tried]
