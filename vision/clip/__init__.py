"""Few-shot CLIP adaptation (LoRA, Block-LoRA, Comp-LoRA) on open_clip models.

Python API (the CLI ``lorakit train clip`` / ``lorakit eval clip`` calls the same functions):

    from lorakit.data.runs import load_config
    from lorakit.vision.clip import pipeline
    cfg = load_config("demos/clip.yaml", ["adapter.method=block_lora"], pipeline.DEFAULTS)
    metrics = pipeline.train(cfg, Path("runs/clip"))
    metrics = pipeline.evaluate(Path("runs/clip"), {})

Modules: ``build`` (backbone loading), ``prompts`` (templates, zero-shot head),
``classifier`` (CLIP as a classifier), ``datasets`` (image tensors, seeded step batches),
``train`` (adapter config, LightningModule), ``evaluate`` (accuracy), ``plots``,
``config`` (the config sections, ``DEFAULTS`` and ``check``: no torch, so the CLI
checks a config at once), ``pipeline`` (the hooks of the shared run
``lorakit.data.runtime.pipeline``, CLI entry points), ``standin`` (the offline pretrained tiny CLIP,
``lorakit-shapes``), ``reproduce`` (``lorakit reproduce clip-lora``: the paper recipe on
CoOp's 11 datasets).
"""
