"""The phases of building a pre-made run, each with its progress and an ETA.

    phases = BuildPhases(expected={"pretrain": 300, "train": 60, "evaluate": 40})
    pipeline.train(cfg, out, callbacks=[phases])     # Lightning marks train's start and end
    phases.message()   # "pretrain: 1:10 so far, ETA ~3:50" | "train: step 40/200, ETA 1:05"

A pipeline's ``train`` does three things in turn: everything before the first optimizer
step (data generation, the stand-in backbone's pretraining: the ``pretrain`` phase), the
training steps (``train``), then its evaluation (``evaluate``). Lightning tells a callback
where training starts and ends, so the phases are told apart without touching the
pipelines. Training's ETA comes from its pace so far; the other two phases report the time
they took in the last build (``expected``, from the shipped runs' manifest), counted down.
"""

from __future__ import annotations

from lorakit.apps.web.common import StepProgress, eta_text

PHASES = ("pretrain", "train", "evaluate")


class BuildPhases(StepProgress):
    """Lightning callback: which phase a build is in, since when, and how far along."""

    def __init__(self, expected: dict | None = None, clock=None):
        super().__init__(None, "train", clock)
        self.expected = {k: float(v) for k, v in (expected or {}).items() if k in PHASES}
        self.phase, self.since = "pretrain", self.clock()
        self.seconds: dict[str, float] = {}

    def _enter(self, phase: str) -> None:
        now = self.clock()
        self.seconds[self.phase] = round(now - self.since, 1)
        self.phase, self.since = phase, now

    def on_fit_start(self, trainer, pl_module) -> None:
        # fit's start, not train's: the pipelines' own callbacks come first in the list, and
        # the ASR pipeline's validation decodes its step-0 WER in its on_train_start
        self._enter("train")

    def on_train_start(self, trainer, pl_module) -> None:
        if self.phase != "train":
            self._enter("train")

    def on_train_end(self, trainer, pl_module) -> None:
        self._enter("evaluate")

    def finish(self) -> dict[str, float]:
        """Seconds per phase, once the pipeline returned."""
        self._enter("done")
        return dict(self.seconds)

    def _phase_eta(self, elapsed: float) -> str | None:
        if self.phase == "train":
            return self.eta()
        expected = self.expected.get(self.phase)
        return None if expected is None else "~" + eta_text(max(0.0, expected - elapsed))

    def message(self) -> str:
        elapsed = self.clock() - self.since
        eta = self._phase_eta(elapsed)
        where = (
            f"step {self.step}/{self.total}"
            if self.phase == "train" and self.total
            else f"{eta_text(elapsed)} so far"
        )
        return f"{self.phase}: {where}" + (f", ETA {eta}" if eta else "")

    def fraction(self) -> float:
        """The build's overall progress: by the last build's phase times when known, else
        the training steps done."""
        if self.phase not in PHASES:
            return 1.0
        step_frac = self.step / self.total if self.total else 0.0
        if set(self.expected) != set(PHASES) or not sum(self.expected.values()):
            return {"pretrain": 0.0, "train": step_frac}.get(self.phase, 1.0)
        elapsed = self.clock() - self.since
        done = sum(self.expected[p] for p in PHASES[: PHASES.index(self.phase)])
        if self.phase == "train":
            done += step_frac * self.expected["train"]
        else:
            done += min(elapsed, self.expected[self.phase])
        return min(0.99, done / sum(self.expected.values()))
