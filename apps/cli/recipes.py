"""Paper-protocol recipes that ``lorakit reproduce <name>`` runs: name -> module.

A recipe module has ``SUMMARY`` (one line) and either ``cli(argv: list[str]) -> None`` (its
own argparse options; bad input raises a one-line ``ValueError`` before any work starts) or
``check(data_root, **opts)``, ``run(data_root, out, **opts)`` and ``OPTIONS`` (the option
names), which ``recipe_cli`` turns into ``--data-root``, ``--out``, ``--check``, ``--opt k=v``.
Other recipes register here with one line each.
"""

RECIPES: dict[str, str] = {
    "clip-lora": "lorakit.vision.clip.reproduce",
    "fcl-cod": "lorakit.vision.sam.reproduce",
    "kids-asr": "lorakit.speech.whisper.reproduce",
    "ood-largo": "lorakit.vision.ood.reproduce",
}
