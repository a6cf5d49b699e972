"""Methods that replace a model's weights instead of adding an adapter, checked without torch.

    sltrain_full   SLTrain as the paper trains (``lorakit.core.replace_weights``): each
                   targeted ``nn.Linear`` becomes ``y = s B (A x) + S x + b`` with
                   ``s = alpha / r`` and ``S`` on a fixed random support; the dense weight
                   is dropped and ``A``, ``B``, ``S``'s values and the bias train.

The name follows the registry's lower-case style and is the one the memory study
(``demos/bench_sltrain.py``) already prints. It is not in the method registry: a
replacement is not a ``Method`` on a ``Host``, and ``inject`` / ``save_adapter`` /
``merge`` do not apply to it. The pipelines that run it (clip, ood) say so with
``check_method(..., also=REPLACEMENT_METHODS)``; the others refuse it with one line
(``method_fields.check_method``, whose ``check_replacement_fields`` checks the kinds). The fields (kinds below, values checked by the core
config's ``validate`` in the pipeline's check, before any work):

    r          int    rank of ``B A`` (at most the layer's smaller side)
    alpha      float  ``s = alpha / r`` (the scale of the low-rank path)
    density    float  share of ``S``'s entries that train, in (0, 1]
    init       str    ``svd`` (``s B A`` = rank-r SVD of the pretrained ``W``, ``S`` = the
                      residual on its support) or ``random`` (the paper's pre-training init)
    seed       int    the supports' draw (with each layer's name)
    recompute  bool   the sparse path keeps no dense ``S`` for backward
"""

from __future__ import annotations

REPLACEMENT_METHODS: dict[str, dict[str, str]] = {
    "sltrain_full": {
        "r": "int", "alpha": "float", "density": "float", "seed": "int", "init": "str",
        "recompute": "bool",
    },
}  # fmt: skip
SUMMARIES = {
    "sltrain_full": "SLTrain as the paper trains: each targeted Linear becomes "
    "s B (A x) + S x + b (low-rank + sparse), the dense weight dropped",
}
PIPELINES = ("clip", "ood")  # the pipelines that run a replacement


def is_replacement(method) -> bool:
    return isinstance(method, str) and method in REPLACEMENT_METHODS


def replacement_hyper(method: str, values: dict, defaults: dict) -> dict:
    """``values`` without the keys ``method`` lacks that still hold the pipeline's default
    (an adapter's ``dropout`` from ``DEFAULTS``: a replaced layer has no dropout); a key it
    lacks set to anything else stays, for ``check_replacement_fields`` to refuse."""
    known = REPLACEMENT_METHODS[method]
    return {k: v for k, v in values.items() if k in known or k not in defaults or v != defaults[k]}


def replacement_lines() -> list[str]:
    """``lorakit methods``' lines for the weight replacements: not adapters, so not in the
    registry's table, but a pipeline's ``adapter.method`` takes them."""
    lines = ["", "Weight replacements (not adapters: the targeted weights are replaced):"]
    for name, fields in REPLACEMENT_METHODS.items():
        lines.append(f"{name}  -  {SUMMARIES[name]}")
        lines.append(f"    fields: {', '.join(fields)}")
        lines.append(
            f"    pipelines: {', '.join(PIPELINES)} (adapter.method: {name}); saved as the "
            "replaced layers' tensors, not mergeable into the original model"
        )
    return lines
