"""The demo hub: one page with a tab per app and an overview of the pre-made runs.

    demo = build_hub(make_context(runs_root(), "demo"))
    demo.launch(server_name="127.0.0.1", server_port=7860)

The overview lists each pre-made run (building with a progress fraction, ready with its
headline metric, failed or unavailable with the reason) and says plainly which model it
runs on: a tiny offline model with random or generated-data weights, or real weights.
While runs are being built the table refreshes itself every two seconds.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import gradio as gr

from lorakit.apps.web.common import DemoContext, guarded
from lorakit.apps.web.gains import no_gain
from lorakit.apps.web.prebuilt import BuildStatus, ensure_runs, profile, start_background

# app name -> (module, tab title, pre-made run keys, one-line description)
APPS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "clip": (
        "lorakit.apps.web.clip",
        "CLIP few-shot",
        ("clip-block_lora",),
        "train Block-/Comp-LoRA on a few images per class; adapted vs zero-shot top-k",
    ),
    "cod": (
        "lorakit.apps.web.cod",
        "Camouflage (SAM + FoRA)",
        ("cod-fora",),
        "point, box or scribble prompts; SAM zero-shot vs FoRA masks, S-measure and MAE",
    ),
    "asr": (
        "lorakit.apps.web.asr",
        "Child speech (Whisper + S2-LoRA)",
        ("asr-s2_lora",),
        "base vs adapted transcripts with word differences; make-it-child-like toggle",
    ),
    "ood": (
        "lorakit.apps.web.ood",
        "Robustness (LARGO)",
        ("ood-lora", "ood-largo"),
        "corrupt an image with a severity slider; base vs LoRA vs LARGO predictions",
    ),
}
# pipeline -> (label, path into metrics.json): the adapted number next to its reference
# points (the model before adaptation, chance), so a small tiny-model number can be read
HEADLINES = {
    "clip": (
        ("accuracy", ("accuracy",)),
        ("zero-shot", ("zero_shot_accuracy",)),
        ("chance", ("chance",)),
    ),
    "cod": (
        ("S-measure", ("s_measure",)),
        ("zero-shot", ("zero_shot", "s_measure")),
        ("MAE", ("mae",)),
    ),
    "asr": (
        ("held-out child WER", ("wer_heldout_child",)),
        ("before", ("baseline_wer_heldout_child",)),
        ("held-out adult WER", ("wer_heldout_adult",)),
        ("before", ("baseline_wer_heldout_adult",)),
        ("test WER", ("wer",)),
    ),
    "ood": (
        ("ID", ("id_accuracy",)),
        ("OOD", ("ood_accuracy",)),
        ("pretrained ID/OOD", ("wise", 0)),
    ),
}


def make_context(
    runs: Path,
    profile_name: str = "demo",
    background: bool = True,
    keys: set[str] | None = None,
    rebuild: bool = False,
) -> DemoContext:
    """Specs of ``profile_name`` (only ``keys`` when given) made ready (in a thread when
    ``background``, else before returning): kept, installed from the runs shipped with
    lorakit, or trained (``rebuild``: all trained again)."""
    specs = [s for s in profile(profile_name, runs) if keys is None or s.key in keys]
    status = (
        start_background(runs, specs, rebuild)
        if background
        else ensure_runs(runs, specs, BuildStatus(), rebuild)
    )
    return DemoContext(runs, specs, status)


def _headline(pipeline: str, path: str) -> str:
    f = Path(path) / "metrics.json"
    if not f.is_file():
        return ""
    m = json.loads(f.read_text())
    parts = []
    for label, path in HEADLINES.get(pipeline, ()):
        v = m
        for key in path:
            ok = (isinstance(v, dict) and key in v) or (isinstance(v, list) and key < len(v))
            v = v[key] if ok else None
        if isinstance(v, dict) and "alpha" in v:  # a WiSE-FT row: alpha 0 is the pretrained model
            v = f"{v['id_accuracy']:.3f}/{v['ood_accuracy']:.3f}" if v["alpha"] == 0 else None
        if isinstance(v, int | float):
            v = f"{v:.3f}"
        if isinstance(v, str):
            parts.append(f"{label} {v}")
    note = no_gain(pipeline, m)  # the method lost to its base model: said in words too
    return ", ".join(parts) + (f". {note}" if parts and note else "")


def status_table(ctx: DemoContext) -> str:
    """Markdown table of the pre-made runs."""
    rows = ["| run | model | state | result | folder |", "|---|---|---|---|---|"]
    snap = ctx.status.snapshot()
    for key, spec in ctx.specs.items():
        row = snap.get(key, {})
        state = row.get("state", "pending")
        if state == "building":
            if row.get("steps_known", True):
                # the phase (pretrain, train, evaluate) with its ETA, from prebuilt.BuildPhases
                phase = f" ({row['message']})" if row.get("phase") else ""
                state = f"building {row.get('fraction', 0.0):.0%}{phase}"
            else:
                state = f"building ({time.time() - row.get('started', time.time()):.0f} s so far)"
        elif state in ("failed", "unavailable"):
            state = f"{state}: {row.get('message', '')}"
        weights = "real weights" if spec.real_weights else "tiny offline model"
        result = (
            _headline(spec.pipeline, row.get("path", "")) if row.get("state") == "ready" else ""
        )
        rows.append(
            f"| {spec.title} | {spec.model} ({weights}) | {state} | {result} | `{row.get('path', '')}` |"
        )
    return "\n".join(rows)


def all_settled(ctx: DemoContext) -> bool:
    return all(
        r.get("state") in ("ready", "failed", "unavailable") for r in ctx.status.snapshot().values()
    )


def overview(ctx: DemoContext, names: list[str], tabs: gr.Tabs) -> None:
    gr.Markdown(
        "Each tab runs one lorakit pipeline on your own input and compares the adapted model "
        "with its base model. Tiny models are used where no real weights are on this machine; "
        "the table says which."
    )
    buttons = []
    for name in names:
        _, title, _, about = APPS[name]
        with gr.Row():
            buttons.append(
                gr.Button(f"Open {title}", size="sm", scale=1, elem_id=f"hub-open-{name}")
            )
            gr.Markdown(about)
    table = gr.Markdown(status_table(ctx), elem_id="hub-status")
    timer = gr.Timer(2.0, active=True)

    def refresh():
        return status_table(ctx), gr.Timer(active=not all_settled(ctx))

    timer.tick(guarded(refresh), None, [table, timer])
    ctx.on_page_load(refresh, None, [table, timer])  # the table as of page load, not build time
    for name, button in zip(names, buttons, strict=True):
        button.click(lambda n=name: gr.Tabs(selected=n), None, tabs)


def build_hub(ctx: DemoContext, names: list[str] | None = None) -> gr.Blocks:
    """The hub page: an overview tab and one tab per app (``names``, default all four)."""
    names = list(names or APPS)
    with gr.Blocks(title="lorakit demos") as demo:
        gr.Markdown("# lorakit demos: low-rank adaptation of CLIP, SAM and Whisper")
        with gr.Tabs() as tabs:
            with gr.Tab("Overview", id="overview"):
                overview(ctx, names, tabs)
            for name in names:
                module, title, _, _ = APPS[name]
                with gr.Tab(title, id=name):
                    importlib.import_module(module).build_tab(ctx)
        ctx.finish(demo)
    return demo


def build_single(ctx: DemoContext, name: str) -> gr.Blocks:
    """One app on its own page (``lorakit demo clip``)."""
    if name not in APPS:
        raise ValueError(f"unknown demo {name!r}; choose from {', '.join(APPS)}")
    return importlib.import_module(APPS[name][0]).build_app(ctx)


def needed_runs(names: list[str]) -> set[str]:
    return {k for n in names for k in APPS[n][2]}
