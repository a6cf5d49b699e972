"""Paper-protocol recipes that ``lorakit reproduce <name>`` runs: name -> module.

A recipe module has ``SUMMARY`` (one line) and ``cli(argv: list[str]) -> None`` (its own
argparse options; bad input raises a one-line ``ValueError`` before any work starts).
Other recipes register here with one line each.
"""

RECIPES: dict[str, str] = {
    "clip-lora": "lorakit.vision.clip.reproduce",
}
