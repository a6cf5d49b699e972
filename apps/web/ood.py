"""Robustness app (LARGO): corrupt an image (type + severity slider) and compare the
predictions of the base model, the LoRA run and the LARGO run side by side; show the
runs' ID-vs-OOD plot and headline numbers.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
from PIL import Image

from lorakit.apps.web.common import MODELS, check_image, folder_key, guarded
from lorakit.apps.web.gains import no_gain, pretrained_row
from lorakit.apps.web.prebuilt import pipeline_module

RUN_KEYS = {"LoRA": "ood-lora", "LARGO": "ood-largo"}
TOP_K = 3
VIEW = 192  # pixels the (small) model input is shown at


def load_run(folder: Path, base: bool = False):
    """A run's fine-tuned classifier (``base``: the pretrained model it started from)."""
    pipeline_module("ood")
    from lorakit.vision.ood.predict import load_run as load

    return load(folder, base)


def get_run(ctx, folder, key: str, base: bool = False):
    path = ctx.require(folder, key, "ood")
    return MODELS.get(("ood", base) + folder_key(path), lambda: load_run(path, base))


def corruption_names() -> list[str]:
    from lorakit.data.corruptions import CORRUPTIONS

    return list(CORRUPTIONS)


def prepare(image: np.ndarray, size: int, corruption: str, severity: int) -> np.ndarray:
    """uint8 (H, W, 3) -> the model input (size, size, 3) uint8, corrupted unless severity 0."""
    from lorakit.vision.ood.predict import prepare as prep

    return prep(image, size, corruption, severity)


def predict(run, lock: threading.Lock, img: np.ndarray) -> dict[str, float]:
    from lorakit.vision.ood.predict import classify

    with lock:
        return classify(run.model, run.classes, img)


def example_image(run, index: int) -> tuple[np.ndarray, str]:
    """The ``index``-th ID test image of an ``OODRun`` (cycling through the classes), its class."""
    root = Path(run.id_test)
    per = [sorted((root / c).glob("*.png")) for c in run.classes]
    c = int(index) % len(run.classes)
    files = per[c]
    if not files:
        raise ValueError(f"no test images of class {run.classes[c]!r} in {root}")
    path = files[(int(index) // len(run.classes)) % len(files)]
    return np.array(Image.open(path).convert("RGB")), run.classes[c]


ROBUSTNESS_NOTE = (
    "*Effective robustness* (Taori et al. 2020): OOD accuracy above what a line fitted "
    "through baseline models' (ID, OOD) accuracies predicts at this run's ID accuracy; "
    'above 0 means more robust than the ID accuracy alone explains. It shows "-" when the '
    "run names no baseline runs (`eval.baselines`) to fit that line."
)


def summary(metrics: dict[str, dict], n_classes: int) -> str:
    """Test-set numbers of the runs (``{name: metrics.json}``) next to the pretrained model
    (WiSE-FT alpha 0) and chance, with each model's OOD drop (ID minus OOD accuracy) and one
    sentence under the table for a method that did not beat the pretrained model."""
    rows = [
        "| model | ID accuracy | OOD accuracy | OOD drop (ID - OOD) | corruption accuracy "
        "| effective robustness |",
        "|---|---|---|---|---|---|",
    ]

    def f(v):
        return f"{v:.3f}" if isinstance(v, int | float) else "-"

    def drop(m):
        i, o = m.get("id_accuracy"), m.get("ood_accuracy")
        return i - o if isinstance(i, int | float) and isinstance(o, int | float) else None

    pre = pretrained_row(next(iter(metrics.values())))
    if pre is not None:
        rows.append(
            f"| pretrained (before fine-tuning) | {f(pre.get('id_accuracy'))} | "
            f"{f(pre.get('ood_accuracy'))} | {f(drop(pre))} | - | - |"
        )
    for name, m in metrics.items():
        rows.append(
            f"| {name} | {f(m.get('id_accuracy'))} | {f(m.get('ood_accuracy'))} | "
            f"{f(drop(m))} | {f(m.get('corruption_accuracy'))} | "
            f"{f(m.get('effective_robustness'))} |"
        )
    chance = f(1 / n_classes) if n_classes else "-"
    rows.append(f"| chance ({n_classes} classes) | {chance} | {chance} | - | {chance} | - |")
    notes = [n for n in (no_gain("ood", m) for m in metrics.values()) if n]
    return "\n".join(rows) + "".join(f"\n\n**{n}**" for n in notes) + "\n\n" + ROBUSTNESS_NOTE


def premade_summary(ctx) -> tuple[str, str | None]:
    """``summary`` of the pre-made runs as they are on disk and the LARGO run's ID-vs-OOD
    plot: the tab shows them as soon as the runs are ready, before any image is picked."""
    from lorakit.data.runs import RunFolder

    runs = {n: RunFolder.existing(ctx.run_path(k)) for n, k in RUN_KEYS.items()}
    shift = runs["LARGO"].read_config()["data"].get("shift") or {}
    plot = runs["LARGO"].path / "plots" / "id_vs_ood.png"
    return (
        summary({n: r.read_metrics() for n, r in runs.items()}, len(shift.get("classes") or [])),
        str(plot) if plot.is_file() else None,
    )


def compare(ctx, folders: list[str], image, corruption: str, severity: int):
    """(shown input, base, LoRA, LARGO label dicts, summary markdown, ID-vs-OOD plot path)."""
    if image is None:
        raise ValueError("no image yet: pick a test image or upload one")
    runs = {
        name: get_run(ctx, f, key) for (name, key), f in zip(RUN_KEYS.items(), folders, strict=True)
    }
    base = get_run(ctx, folders[-1], RUN_KEYS["LARGO"], base=True)
    size = base[0].image_size
    img = prepare(np.asarray(image), size, corruption, severity)
    outs = [predict(*base, img)] + [predict(*runs[n], img) for n in RUN_KEYS]
    shown = np.asarray(Image.fromarray(img).resize((VIEW, VIEW), Image.NEAREST))
    plot = Path(folders[-1]) / "plots" / "id_vs_ood.png"
    return (
        shown,
        *outs,
        summary({n: r.metrics for n, (r, _) in runs.items()}, len(base[0].classes)),
        str(plot) if plot.is_file() else None,
    )


# --------------------------------------------------------------------------- page


def _input_panel(ui: SimpleNamespace) -> None:
    """A test image by number or an upload, the corruption and its severity, the input shown."""
    with gr.Row():
        with gr.Column():
            with gr.Row():
                ui.index = gr.Number(
                    value=0, precision=0, label="test image #", min_width=80, elem_id="ood-index"
                )
                ui.pick = gr.Button("Pick a test image", interactive=False, elem_id="ood-pick")
            ui.upload = gr.File(
                label="or upload an image", interactive=False, elem_id="ood-upload"
            )
            ui.corruption = gr.Dropdown(
                corruption_names(),
                value="gaussian_noise",
                label="corruption",
                elem_id="ood-corruption",
            )
            ui.severity = gr.Slider(
                0, 5, value=0, step=1, label="severity (0 = clean)", elem_id="ood-severity"
            )
        ui.shown = gr.Image(
            label="model input (its own small size, shown enlarged)",
            interactive=False,
            elem_id="ood-shown",
        )


def _result_panel(ctx, ui: SimpleNamespace) -> None:
    """The three models' top-k, their run folders, the runs' summary table and plot."""
    with gr.Row():
        ui.outs = [
            gr.Label(num_top_classes=TOP_K, label=name, elem_id=f"ood-{name.lower()}")
            for name in ("base", "LoRA", "LARGO")
        ]
    with gr.Row():
        ui.folders = [
            gr.Textbox(
                label=f"{name} run folder",
                value=str(ctx.run_path(key)),
                elem_id=f"ood-folder-{key}",
            )
            for name, key in RUN_KEYS.items()
        ]
    with gr.Row():
        ui.table = gr.Markdown(elem_id="ood-summary")
        ui.plot = gr.Image(
            label="ID vs OOD accuracy (LARGO run)",
            interactive=False,
            height=280,
            elem_id="ood-plot",
        )
    ui.message = gr.Markdown(elem_id="ood-message")


def on_upload(f):
    return np.asarray(check_image(f)), f"uploaded {Path(f).name}"


def _wire(ctx, ui: SimpleNamespace) -> None:
    def on_pick(i, lora_f, largo_f):
        run, _ = get_run(ctx, largo_f, RUN_KEYS["LARGO"], base=True)
        img, cls = example_image(run, int(i or 0))
        return img, f"test image #{int(i or 0)}: a **{cls}** (ID style)"

    def on_compare(img, c, s, *fs):
        return compare(ctx, list(fs), img, c, s)

    def on_change(img, c, s, *fs):
        return gr.skip() if img is None else compare(ctx, list(fs), img, c, s)

    outputs = [ui.shown, *ui.outs, ui.table, ui.plot]
    inputs = [ui.image, ui.corruption, ui.severity, *ui.folders]
    ui.pick.click(guarded(on_pick), [ui.index, *ui.folders], [ui.image, ui.message]).success(
        guarded(on_compare), inputs, outputs, concurrency_id="infer"
    )
    ui.upload.upload(guarded(on_upload), ui.upload, [ui.image, ui.message]).success(
        guarded(on_compare), inputs, outputs, concurrency_id="infer"
    )
    for widget in (ui.corruption, ui.severity):
        widget.change(
            guarded(on_change), inputs, outputs, concurrency_id="infer", trigger_mode="always_last"
        )


def build_tab(ctx) -> None:
    ui = SimpleNamespace(image=gr.State(None))
    gr.Markdown(
        "### Robustness under distribution shift: base vs LoRA vs LARGO\n"
        + ctx.model_note(RUN_KEYS["LARGO"])
    )
    banner = ctx.banner("ood", list(RUN_KEYS.values()))
    _input_panel(ui)
    _result_panel(ctx, ui)
    _wire(ctx, ui)
    ctx.gate(
        banner,
        list(RUN_KEYS.values()),
        [ui.pick, ui.upload],
        also=(lambda: premade_summary(ctx), [ui.table, ui.plot]),
    )


def build_app(ctx) -> gr.Blocks:
    return ctx.single_app(
        "robustness", "robustness under shift", list(RUN_KEYS.values()), build_tab
    )
