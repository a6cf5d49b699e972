"""Long phases show an ETA; the terminal gets one line per pre-made run state and the URL
last."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import torch

from lorakit.apps.cli.demo import announce_when_ready
from lorakit.apps.web.common import StepProgress, eta_text
from lorakit.apps.web.prebuilt import BuildStatus


def test_eta_text():
    assert eta_text(0) == "0:00"
    assert eta_text(42.4) == "0:42"
    assert eta_text(65) == "1:05"
    assert eta_text(3 * 3600 + 5 * 60 + 10) == "3:05:10"
    assert eta_text(-3) == "0:00"


def test_step_progress_reports_the_eta_at_the_pace_so_far():
    now = [100.0]
    seen = []
    cb = StepProgress(lambda frac, desc: seen.append((frac, desc)), clock=lambda: now[0])
    trainer = SimpleNamespace(global_step=0, max_steps=10)
    for step, t in ((5, 100.0), (6, 102.0), (8, 106.0)):  # resumed at step 5; 2 s a step
        trainer.global_step, now[0] = step, t
        cb.on_train_batch_end(trainer, None, {"loss": torch.tensor(1.0)}, None, 0)
    assert seen[0] == (0.5, "training: step 5/10")  # one step seen: no pace yet
    assert seen[1] == (0.6, "training: step 6/10, ETA 0:08")
    assert seen[2] == (0.8, "training: step 8/10, ETA 0:04")


def test_build_status_logs_one_line_per_state_change(caplog):
    status = BuildStatus()
    with caplog.at_level(logging.INFO, logger="lorakit.apps.web.prebuilt"):
        status.set("clip", "pending", "waiting", 0.0)
        status.set("clip", "building", "pretrain: 0:00 so far", 0.0, phase="pretrain")
        for i in range(20):
            status.set("clip", "building", f"train: step {i}/20", i / 20, phase="train")
        status.set("clip", "building", "evaluate: 0:00 so far", 1.0, phase="evaluate")
        status.set("clip", "ready", "built in 3 s")
        status.set("cod", "pending", "waiting", 0.0)
        status.set("cod", "ready", "shipped with lorakit")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert lines == [  # pending is the start, not news; a shipped run gets one line
        "pre-made run clip: building pretrain: 0:00 so far",
        "pre-made run clip: building train: step 0/20",
        "pre-made run clip: building evaluate: 0:00 so far",
        "pre-made run clip: ready built in 3 s",
        "pre-made run cod: ready shipped with lorakit",
    ]
    assert status.get("clip")["fraction"] == 1.0


def test_the_ready_line_with_the_url_comes_after_the_builds():
    status = BuildStatus()
    status.set("clip", "building", "training", 0.0)
    status.set("asr", "building", "training", 0.0)
    printed = []
    thread = announce_when_ready(status, "http://127.0.0.1:7860/", printed.append)
    thread.join(0.2)
    assert printed == []  # still building: nothing yet
    status.set("clip", "ready", "built")
    status.set("asr", "failed", "boom")
    status.done.set()
    thread.join(5)
    assert printed == [
        "pre-made runs: 1 ready, 1 failed, 0 unavailable. The hub is ready at http://127.0.0.1:7860/"
    ]
