"""A generated 4-class shapes dataset (once per session) and a fast tiny-CLIP run config.

The classes are colour-shape pairs the CLIP stand-in never saw in pretraining, drawn in
the ``dark`` style it never saw either: its zero-shot accuracy there is low, so few-shot
adaptation has something to show."""

from __future__ import annotations

import pytest

from lorakit.data.captions import COMBOS, classname
from lorakit.data.fewshot import generate_shapes_dataset
from lorakit.data.runs import load_config
from lorakit.vision.clip.pipeline import DEFAULTS

CLASSES = [classname(p) for p in COMBOS.task[:4]]


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    spec = {"classes": CLASSES, "train_per_class": 8, "test_per_class": 10, "size": 32, "seed": 0,
            "style": "dark"}
    return generate_shapes_dataset(root, spec)


@pytest.fixture
def run_cfg(shapes_root):
    """Tiny CLIP, 4 shots, 60 steps of lr 1e-2: learnable in seconds on one CPU thread."""

    def make(*overrides: str) -> dict:
        base = [
            f"data.root={shapes_root}",
            "optim.lr=0.01",
            "optim.batch_size=16",
            "trainer.max_steps=60",
            "trainer.progress=false",
            "trainer.checkpoint_every=30",
            "trainer.log_every=5",
            "trainer.accelerator=cpu",
            "runtime.threads=1",
        ]
        return load_config(None, base + list(overrides), DEFAULTS)

    return make
