"""The one pipeline registry: pipeline name -> the module that runs it, with what the apps
need to know about it without importing torch.

A pipeline's light config module (``config``: no torch) exposes ``DEFAULTS``, ``check(cfg)``
and optionally ``RENAMED``; the CLI checks a config with it before the pipeline module (and
torch) is imported. A pipeline module exposes ``DEFAULTS`` (its config, in the one vocabulary: see
``lorakit.data.vocabulary``), ``train(cfg, out, callbacks=None) -> metrics`` and
``evaluate(run, overrides) -> metrics`` (``eval/<suite>.json``), and optionally ``RENAMED``
(old config section names still read). The CLI (``lorakit train/eval``), the pre-made
runs (``prebuilt``), ``lorakit compare`` and the run-kind check all read this table, so a
new pipeline is one entry here plus its module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Pipeline:
    name: str
    module: str  # import path of the pipeline module
    signature: str  # config section (or "section.key") no other pipeline's config has
    demo: str  # the example config the README and error hints point to
    single_task: bool = True  # False: a loop over tasks (continual), not a pre-made run
    config: str | None = None  # the light config module (DEFAULTS, check); None: ``module``


PIPELINES: dict[str, Pipeline] = {
    p.name: p
    for p in (
        Pipeline("clip", "lorakit.vision.clip.pipeline", "head", "demos/clip.yaml",
                 config="lorakit.vision.clip.config"),
        Pipeline("cod", "lorakit.vision.sam.pipeline", "prompts", "demos/cod.yaml",
                 config="lorakit.vision.sam.config"),
        Pipeline("asr", "lorakit.speech.whisper.pipeline", "augment", "demos/asr.yaml",
                 config="lorakit.speech.whisper.config"),
        Pipeline("ood", "lorakit.vision.ood.pipeline", "data.shift", "demos/ood.yaml",
                 config="lorakit.vision.ood.config"),
        # a task sequence (CLIP or Whisper), GORP + baselines
        Pipeline("continual", "lorakit.apps.continual", "continual", "demos/continual.yaml",
                 single_task=False),
    )
}
SINGLE_TASK = tuple(n for n, p in PIPELINES.items() if p.single_task)


def pipeline_module(name: str):
    """The pipeline's module; a one-line ``ValueError`` when ``name`` is unknown, its
    module is missing from this build or lacks ``DEFAULTS``/``train``/``evaluate``."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
    path = PIPELINES[name].module
    try:
        mod = importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name and (path.startswith(e.name) or e.name.startswith(path)):
            raise ValueError(f"the {name} pipeline is not available in this build ({e})") from None
        raise
    missing = [a for a in ("DEFAULTS", "train", "evaluate") if not hasattr(mod, a)]
    if missing:
        raise ValueError(f"the {name} pipeline is incomplete: {path} lacks {missing}")
    return mod


def pipeline_config(name: str):
    """The pipeline's light config module (``DEFAULTS``, ``check``, ``RENAMED``): importing
    it imports no torch. A pipeline without one answers with its full module."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
    path = PIPELINES[name].config
    return importlib.import_module(path) if path else pipeline_module(name)
