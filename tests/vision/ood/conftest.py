"""A tiny generated shift task and tiny ViT config shared by the ood pipeline tests."""

import copy

import pytest

from lorakit.data.runs import deep_update
from lorakit.vision.ood.pipeline import DEFAULTS

TINY = {
    "data": {
        "shift": {
            "classes": ["circle", "square", "triangle", "cross"],
            "size": 16,
            "train_per_class": 6,
            "test_per_class": 3,
            "ood_per_class": 3,
            "ood_styles": ["sketch", "night"],
        }
    },
    "backbone": {
        "kind": "tiny_vit",
        "image_size": 16,
        "patch_size": 8,
        "width": 32,
        "depth": 2,
        "heads": 2,
    },
    "adapter": {"r": 2, "alpha": 2},
    "optim": {"lr": 0.01, "batch_size": 8},
    "eval": {
        "corruptions": ["gaussian_noise", "motion_blur"],
        "severities": [1, 5],
        "corruption_per_class": 2,
        "wise_alphas": [0.0, 0.5, 1.0],
    },
    "trainer": {"max_steps": 4, "log_every": 1, "checkpoint_every": 2, "progress": False},
}


@pytest.fixture(scope="session")
def task_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ood-task")


@pytest.fixture
def tiny_cfg(task_root):
    def make(name: str = "largo", **sections) -> dict:
        cfg = deep_update(copy.deepcopy(DEFAULTS), TINY)
        cfg["data"]["root"] = str(task_root)
        cfg["adapter"]["method"] = name
        return deep_update(cfg, sections)

    return make
