"""The Lightning runtime every pipeline trains with (one home, apart from the datasets).

    options.py    the ``trainer:`` config section, validated before any work starts
    sampler.py    ``StepSampler`` (resumable data order) and per-item seeded augmentation
    callbacks.py  the training protocol (AdapterHooks: before/after-step
                  hooks, rank changes, finish + ranks), per-step RNG, NaN guard, atomic IO
    module.py     ``AdapterModule``: the pipelines' LightningModule base (optimizer built once,
                  lr schedule, regularizer, checkpoints holding only what trains)
    logs.py       a CSV logger that continues the log of an interrupted run
    methods.py    ``check_method_supported``: refuse methods whose optimizer trains base weights
    prepare.py    ``PrepareMethods``: the protocol's prepare step (LoRA-SB) on a fresh run
    replaced.py   ``adapter.method: sltrain_full``: replace Linears by SLTrain layers, save
                  and reload them (the checkpoint holds them like any trainable module)
    trainer.py    ``build_trainer``: the Trainer, the resume checkpoint, quieter Lightning
    fsdp.py       ``AdapterFSDP``: ``--strategy fsdp`` for adapters on a sharded frozen base
    pipeline.py   ``Pipeline`` hooks, ``run_training`` and ``run_eval``: one run and one
                  evaluation for every pipeline

Exact resume rests on one rule: every random draw is a function of ``(seed, position)``,
never of a generator's history. Data order and augmentation come from ``StepSampler``
(position = micro-batches consumed, kept in the checkpoint), model-side randomness
(dropout, flips) is re-seeded at each micro-batch, and method state (LARGO radii and their
Adam moments, S2-LoRA state, an EMA teacher) lives in the module's state dict.
"""

from lorakit.data.lazy import lazy_getattr

# Names -> the submodule defining them, imported on first use (PEP 562): the light
# ``options`` module (the ``trainer:`` section) is read by the CLI's config check without
# importing torch or Lightning.
_HOMES = {
    "AdapterHooks": "callbacks",
    "AtomicCheckpointIO": "callbacks",
    "NonFiniteGuard": "callbacks",
    "NonFiniteLoss": "callbacks",
    "StepSeed": "callbacks",
    "check_method_supported": "methods",
    "AdapterModule": "module",
    "Schedule": "module",
    "lr_factor": "module",
    "TrainerOptions": "options",
    "trainer_options": "options",
    "PrepareMethods": "prepare",
    "SeededItems": "sampler",
    "StepSampler": "sampler",
    "seeded": "sampler",
    "build_trainer": "trainer",
    "resumed_from_step": "trainer",
}


__getattr__ = lazy_getattr(__name__, _HOMES)


__all__ = [
    "AdapterHooks",
    "AdapterModule",
    "Schedule",
    "lr_factor",
    "AtomicCheckpointIO",
    "NonFiniteGuard",
    "NonFiniteLoss",
    "PrepareMethods",
    "SeededItems",
    "StepSampler",
    "StepSeed",
    "TrainerOptions",
    "build_trainer",
    "check_method_supported",
    "resumed_from_step",
    "seeded",
    "trainer_options",
]
