"""Whether a run's method helped, in one sentence next to its numbers.

    no_gain("asr", metrics)   # "" when the method beat its base model, else one sentence

Every tab compares an adapted model with the model it started from. On the tiny offline
stand-ins a method does not always win; then the page says so plainly instead of leaving
the reader to spot that the adapted number is the worse one. The comparisons are the
headline ones of each pipeline's ``metrics.json``:

    clip   test accuracy above zero-shot CLIP's
    cod    S-measure above and MAE below zero-shot SAM's
    asr    held-out child WER below the base model's, held-out adult WER not above it
    ood    ID accuracy above the pretrained model's (the WiSE-FT row at alpha 0)
"""

from __future__ import annotations


def _name(metrics: dict, fallback: str) -> str:
    from lorakit.core.table import display_name  # the method's own spelling (LoRA, FoRA)

    return display_name(str(metrics.get("method") or fallback))


def pretrained_row(metrics: dict) -> dict | None:
    """The OOD run's pretrained model: its WiSE-FT row at alpha 0 (None: not measured)."""
    return next((w for w in metrics.get("wise") or [] if w.get("alpha") == 0), None)


def _numbers(metrics: dict, *keys: str) -> list[float] | None:
    values = [metrics.get(k) for k in keys]
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return [float(v) for v in values] if ok else None


def _clip(m: dict) -> str:
    v = _numbers(m, "accuracy", "zero_shot_accuracy")
    if v is None or v[0] > v[1]:
        return ""
    return (
        f"{_name(m, 'block_lora')} shows no gain on this stand-in: test accuracy {v[0]:.1%} "
        f"against {v[1]:.1%} for zero-shot CLIP."
    )


def _cod(m: dict) -> str:
    v = _numbers(m, "s_measure", "mae")
    z = _numbers(m.get("zero_shot") or {}, "s_measure", "mae")
    if v is None or z is None:
        return ""
    worse = [
        f"{label} {a:.3f} against {b:.3f}"
        for label, a, b, bad in (
            ("S-measure", v[0], z[0], v[0] <= z[0]),
            ("MAE", v[1], z[1], v[1] >= z[1]),
        )
        if bad
    ]
    if not worse:
        return ""
    return (
        f"{_name(m, 'fora')} shows no gain over zero-shot SAM on this stand-in: "
        f"{' and '.join(worse)} (S-measure: higher is better; MAE: lower is better)."
    )


def _asr(m: dict) -> str:
    child = _numbers(m, "wer_heldout_child", "baseline_wer_heldout_child")
    adult = _numbers(m, "wer_heldout_adult", "baseline_wer_heldout_adult")
    if child is None:
        return ""
    child_worse = child[0] >= child[1]
    adult_worse = adult is not None and adult[0] > adult[1]
    if not (child_worse or adult_worse):
        return ""
    parts = []
    if child_worse:
        parts.append(f"held-out child WER {child[0]:.3f} against {child[1]:.3f} before")
    if adult_worse:
        parts.append(f"held-out adult WER {adult[0]:.3f} against {adult[1]:.3f} before")
    return (
        f"{_name(m, 's2_lora')} shows no gain on this stand-in: {' and '.join(parts)} "
        "(lower is better)."
    )


def _ood(m: dict) -> str:
    pre = pretrained_row(m)
    v = _numbers(m, "id_accuracy")
    if pre is None or v is None or not isinstance(pre.get("id_accuracy"), int | float):
        return ""
    if v[0] > pre["id_accuracy"]:
        return ""
    return (
        f"{_name(m, 'lora')} shows no gain on this stand-in: ID accuracy {v[0]:.3f} against "
        f"{pre['id_accuracy']:.3f} for the pretrained model."
    )


RULES = {"clip": _clip, "cod": _cod, "asr": _asr, "ood": _ood}


def no_gain(pipeline: str, metrics: dict) -> str:
    """One sentence saying the run's method did not beat its base model on the headline
    numbers, or "" when it did (or the numbers to tell are not there)."""
    rule = RULES.get(pipeline)
    return rule(metrics) if rule is not None and isinstance(metrics, dict) else ""
