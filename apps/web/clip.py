"""CLIP few-shot app: train an adapter on a few uploaded images per class, then classify
new uploads with the adapted and the zero-shot model side by side (top-k probabilities).

A session starts on the pre-made run (``clip-block_lora``); training or "load run folder"
switches that session (``gr.State``) to another run without touching other sessions.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from lorakit.apps.web.common import (
    MODELS,
    TRAIN_LOCK,
    StepProgress,
    check_image,
    folder_key,
    guarded,
    loss_figure,
    require_run,
)
from lorakit.apps.web.prebuilt import pipeline_module, profile, resolve

RUN_KEY = "clip-block_lora"
SLOTS = 4
METHODS = ("lora", "block_lora", "comp_lora")
TOP_K = 3
MAX_IMAGES_PER_CLASS = 16


def load_run(folder: Path):
    """The run's ``lorakit.vision.clip.predict.ClipRun`` (backbone, adapter, class names)."""
    pipeline_module("clip")
    from lorakit.vision.clip.predict import load_run as load

    return load(folder)


def get_run(folder, roots=None) -> tuple[object, threading.Lock]:
    path = require_run(folder, "clip", roots)
    return MODELS.get(("clip",) + folder_key(path), lambda: load_run(path))


def classify(run, lock: threading.Lock, image) -> tuple[dict, dict]:
    """PIL image -> (adapted, zero-shot) ``{class: probability}``."""
    from lorakit.vision.clip.predict import classify as predict

    with lock:
        return predict(run, image)


def enlarged(img, side: int = 192):
    """Small images (the 32 px demo data) scaled up with visible pixels, so they read."""
    w, h = img.size
    if max(w, h) >= side:
        return img
    k = max(1, side // max(w, h))
    return img.resize((w * k, h * k), resample=0)  # nearest neighbour


def describe(folder: Path, classnames: list[str] | None = None) -> str:
    """The loaded run in one paragraph: method, shots, test vs zero-shot accuracy, and the
    classes it knows (an image of anything else is still put in one of them)."""
    from lorakit.data.runs import RunFolder

    m = RunFolder(folder).read_metrics()
    acc, zs, chance = m.get("accuracy"), m.get("zero_shot_accuracy"), m.get("chance")
    nums = (
        f"test accuracy {acc:.1%} (zero-shot CLIP {zs:.1%}"
        + (f", chance {chance:.1%})" if chance is not None else ")")
        if acc is not None and zs is not None
        else "no metrics"
    )
    text = f"**Loaded run** `{folder}`: {m.get('method', '?')}, {m.get('shots', '?')} shots, {nums}"
    if classnames:
        text += (
            f"\n\n**Classes it knows** ({len(classnames)}): "
            + ", ".join(f"`{c}`" for c in classnames)
            + ". Classify an image of one of them: any other image is still put in one of these."
        )
    return text


# --------------------------------------------------------------------------- training


def collect_classes(names: list[str], files: list) -> dict[str, list[Path]]:
    """Slot values -> {class name: image paths}; ``ValueError`` for a bad set of classes."""
    classes: dict[str, list[Path]] = {}
    for i, (name, group) in enumerate(zip(names, files, strict=True)):
        name = (name or "").strip()
        group = [Path(f if isinstance(f, str | Path) else f.name) for f in (group or [])]
        if not name and not group:
            continue
        if not name:
            raise ValueError(f"class {i + 1} has images but no name")
        if not group:
            raise ValueError(f"class {name!r} has no images: upload at least one")
        if name.lower() in (c.lower() for c in classes):
            raise ValueError(f"class name {name!r} is used twice")
        if any(ch in name for ch in "/\\") or name.startswith("."):
            raise ValueError(f"class name {name!r} may not contain / or \\ or start with a dot")
        if len(group) > MAX_IMAGES_PER_CLASS:
            raise ValueError(
                f"class {name!r}: {len(group)} images, at most {MAX_IMAGES_PER_CLASS} per class"
            )
        for f in group:
            check_image(f)
        classes[name] = group
    if len(classes) < 2:
        raise ValueError("give at least two classes, each with a name and a few images")
    return classes


def write_tree(classes: dict[str, list[Path]], root: Path) -> None:
    """The uploads as an ImageFolder tree: root/train/<class>/ and the same images in test/."""
    for part in ("train", "test"):
        for name, files in classes.items():
            folder = root / part / name.replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for j, f in enumerate(files):
                check_image(f).save(folder / f"{j:03d}.png")


def train_config(data_root: Path, shots: int, method: str, steps: int) -> dict:
    """The pre-made run's config with the uploads as data and the chosen method/budget."""
    spec = next(s for s in profile("demo", ".") if s.key == RUN_KEY)
    cfg = resolve(spec)
    cfg["data"].update(
        root=str(data_root), generate=None, shots=shots, base_novel=False, heldout=None
    )
    cfg["adapter"]["method"] = method
    cfg["trainer"].update(max_steps=int(steps), progress=False, resume=False)
    return cfg


KEEP_SESSIONS = 8  # trained-in-the-page runs kept in the scratch folder (newest first)


def prune_sessions(scratch: Path, keep: int = KEEP_SESSIONS) -> None:
    """Remove all but the ``keep`` newest ``clip-*`` training folders of this app."""
    sessions = sorted(scratch.glob("clip-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in sessions[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def train_stream(names, files, method, steps, progress):
    """Generator: train in a worker thread, yield (status, loss plot, run folder) as it goes."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    classes = collect_classes(names, files)
    session = Path(tempfile.gettempdir()) / "lorakit-demo" / f"clip-{uuid.uuid4().hex[:10]}"
    write_tree(classes, session / "data")
    shots = min(len(v) for v in classes.values())
    cfg = train_config(session / "data", shots, method, steps)
    cb = StepProgress(desc=f"training {method}")
    result: dict = {}

    def work():
        try:
            with TRAIN_LOCK:
                result["metrics"] = pipeline_module("clip").train(
                    cfg, session / "run", callbacks=[cb]
                )
        except Exception as e:  # noqa: BLE001 - re-raised in the handler thread below
            result["error"] = e

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.7)
        if cb.total:
            progress(cb.step / cb.total, desc=f"{method}: step {cb.step}/{cb.total}")
            msg = f"training {method} on {len(classes)} classes x {shots} shots: step {cb.step}/{cb.total}"
        else:
            msg = "waiting for the trainer (another training job may be running)"
        yield msg, loss_figure(cb.losses, f"{method} training loss"), gr.skip()
    if "error" in result:
        shutil.rmtree(session, ignore_errors=True)
        raise result["error"]
    # classification needs the adapter, config and class folders: drop the checkpoints,
    # and older sessions beyond KEEP_SESSIONS
    shutil.rmtree(session / "run" / "checkpoints", ignore_errors=True)
    prune_sessions(session.parent)
    m = result["metrics"]
    msg = (
        f"trained {method} for {m.get('steps')} steps: accuracy on your images {m['accuracy']:.1%} "
        f"(zero-shot {m['zero_shot_accuracy']:.1%}). Classify an image below with this adapter."
    )
    yield msg, loss_figure(cb.losses, f"{method} training loss"), str(session / "run")


EXAMPLE_LOCK = threading.Lock()


def example_set(cache: Path) -> tuple[list[str], list[list[str]]]:
    """Generate (once) the shapes example set; returns slot names and image paths."""
    from lorakit.data.fewshot import ShapesSpec, generate_shapes_dataset

    spec = ShapesSpec(train_per_class=4, test_per_class=2, size=64, seed=3)
    with EXAMPLE_LOCK:  # two clicks at once: the second finds the set the first made
        root = generate_shapes_dataset(cache / "data" / "clip-example", spec)
    names, files = [], []
    for c in spec.classes[:SLOTS]:
        folder = root / "train" / c.replace(" ", "_")
        names.append(c)
        files.append([str(p) for p in sorted(folder.glob("*.png"))])
    return names, files


EXAMPLES_PER_CLASS = 3
EXAMPLE_SEED = 7_001  # not a run's data seed: drawings no pre-made run trained or tested on


def class_examples(folder: Path, classnames: list[str]) -> tuple[list[tuple[str, str]], str]:
    """Freshly drawn images of the loaded run's classes, in the run's own size and style
    (``data.generate`` of its config), as ``[(path, class)]`` and a one-line caption.

    They are written under the apps' scratch folder (one folder per drawing spec, reused),
    never into the run. A run whose class names are not "<colour> <shape>" pairs lorakit
    can draw (one trained on uploads) gets no examples and a caption saying so."""
    from lorakit.apps.web.common import demo_temp_root
    from lorakit.data.fewshot import ShapesSpec, generate_shapes_dataset
    from lorakit.data.runs import RunFolder

    try:
        gen = (RunFolder.existing(folder).read_config().get("data") or {}).get("generate")
    except (OSError, ValueError):
        gen = None
    gen = gen if isinstance(gen, dict) else {}
    extra = {k: gen[k] for k in ("size", "style", "backgrounds") if gen.get(k)}
    try:
        spec = ShapesSpec(
            classes=list(classnames),
            train_per_class=EXAMPLES_PER_CLASS,
            test_per_class=0,
            seed=EXAMPLE_SEED,
            **extra,
        )
        spec.parsed()
    except (TypeError, ValueError):
        return [], (
            "No example images: this run's classes are not shapes lorakit can draw; "
            "upload an image of one of them."
        )
    root = demo_temp_root() / "clip-class-examples" / spec.fingerprint()
    with EXAMPLE_LOCK:  # two sessions loading the same run: the second reuses the first's
        generate_shapes_dataset(root, spec)
    items = [
        (str(p), name)
        for name in classnames
        for p in sorted((root / "train" / name.replace(" ", "_")).glob("*.png"))
    ]
    return items, (
        f"Examples of its {len(classnames)} classes (newly drawn, never seen in training): "
        "click one to classify it"
    )


# --------------------------------------------------------------------------- page


def _train_panel(ui: SimpleNamespace) -> None:
    """Step 1: class names and images per slot (or the generated set), method, steps, Train."""
    with gr.Accordion(
        "1. Train on your own few-shot images (or the generated example set)", open=False
    ):
        ui.names, ui.files = [], []
        with gr.Row():
            for i in range(SLOTS):
                with gr.Column(min_width=120):
                    ui.names.append(gr.Textbox(label=f"class {i + 1}", elem_id=f"clip-name-{i}"))
                    ui.files.append(
                        gr.File(label="images", file_count="multiple", elem_id=f"clip-files-{i}")
                    )
        with gr.Row():
            ui.example = gr.Button("Use generated example set", elem_id="clip-example")
            ui.method = gr.Radio(
                list(METHODS), value="block_lora", label="method", elem_id="clip-method"
            )
            ui.steps = gr.Slider(
                4, 200, value=40, step=1, label="training steps", elem_id="clip-steps"
            )
            ui.train = gr.Button("Train", variant="primary", elem_id="clip-train")
        ui.gallery = gr.Gallery(
            label="example set (used for slots without uploads)",
            visible=False,
            columns=8,
            height=140,
            elem_id="clip-gallery",
        )
        ui.train_msg = gr.Markdown(elem_id="clip-train-msg")
        ui.curve = gr.Plot(label="loss curve", elem_id="clip-curve")


def _classify_panel(ui: SimpleNamespace, default_run: str) -> None:
    """Step 2: load a run folder, pick an image, Classify; adapted and zero-shot top-k."""
    with gr.Row():
        ui.folder = gr.Textbox(
            label="or load a run folder", value=default_run, scale=4, elem_id="clip-folder"
        )
        ui.load = gr.Button("Load run", scale=1, elem_id="clip-load")
    ui.class_examples = gr.Gallery(
        label="examples of the loaded run's classes",
        columns=12,
        height=130,
        allow_preview=False,
        elem_id="clip-class-examples",
    )
    with gr.Row():
        ui.image = gr.File(label="image to classify", elem_id="clip-image")
        ui.preview = gr.Image(
            label="preview (shown enlarged)", interactive=False, height=200, elem_id="clip-preview"
        )
    ui.classify_btn = gr.Button(
        "Classify", variant="primary", interactive=False, elem_id="clip-classify"
    )
    with gr.Row():
        ui.adapted = gr.Label(num_top_classes=TOP_K, label="adapted model", elem_id="clip-adapted")
        ui.zero = gr.Label(num_top_classes=TOP_K, label="zero-shot model", elem_id="clip-zero")


CLEARED = (None, None, None)  # preview and both label outputs: no stale result remains


def _handlers(ctx) -> SimpleNamespace:
    """The tab's event handlers (they read runs through ``ctx``'s roots and cache)."""

    def on_example():
        n, f = example_set(ctx.runs)
        shown = [(p, name) for name, group in zip(n, f, strict=True) for p in group]
        return *n, f, gr.Gallery(value=shown, visible=True)

    def loaded(path: Path, run) -> tuple:
        """What the page shows of a loaded run: its description and class examples."""
        items, caption = class_examples(path, run.classnames)
        gallery = gr.Gallery(value=items or None, label=caption)
        return describe(path, run.classnames), gallery, [p for p, _ in items]

    def on_load(path):
        path = require_run(path, "clip", ctx.roots)
        run, _ = get_run(path, ctx.roots)
        return str(path), *loaded(path, run), gr.update(interactive=True), *CLEARED

    def on_example_pick(paths, evt: gr.SelectData):
        if not paths or not 0 <= evt.index < len(paths):
            raise ValueError("that example is gone: load the run again")
        return paths[evt.index]

    def on_classify(run_folder, upload):
        img = check_image(upload)
        run, lock = get_run(run_folder, ctx.roots)
        a, z = classify(run, lock, img)
        return enlarged(img), a, z

    def on_train(*args, progress=gr.Progress()):
        *vals, example_set_files, m, s = args
        groups = [
            up or (example_set_files[i] if example_set_files else None)
            for i, up in enumerate(vals[SLOTS:])
        ]
        yield from train_stream(vals[:SLOTS], groups, m, s, progress)

    def on_trained(path):
        if not path:
            return *[gr.skip()] * 4, *[gr.skip()] * len(CLEARED)
        run, _ = get_run(path, ctx.roots)
        return *loaded(Path(path), run), gr.update(interactive=True), *CLEARED

    def on_ready(path):
        path = require_run(path, "clip", ctx.roots)
        run, _ = get_run(path, ctx.roots)
        return loaded(path, run)

    return SimpleNamespace(**{k: v for k, v in locals().items() if k.startswith("on_")})


def _wire(ui: SimpleNamespace, h: SimpleNamespace) -> None:
    shown = [ui.preview, ui.adapted, ui.zero]
    ui.example.click(guarded(h.on_example), None, [*ui.names, ui.example_files, ui.gallery])
    ui.train.click(
        guarded(h.on_train),
        [*ui.names, *ui.files, ui.example_files, ui.method, ui.steps],
        [ui.train_msg, ui.curve, ui.run_state],
        concurrency_limit=1,
        concurrency_id="train",
    ).then(h.on_trained, ui.run_state, [*ui.view, ui.classify_btn, *shown])
    ui.load.click(
        guarded(h.on_load),
        ui.folder,
        [ui.run_state, *ui.view, ui.classify_btn, *shown],
        concurrency_id="infer",
    )
    ui.classify_btn.click(
        guarded(h.on_classify), [ui.run_state, ui.image], shown, concurrency_id="infer"
    )
    ui.class_examples.select(guarded(h.on_example_pick), ui.example_paths, ui.image).success(
        guarded(h.on_classify), [ui.run_state, ui.image], shown, concurrency_id="infer"
    )


def build_tab(ctx) -> None:
    """The CLIP app's widgets inside the current ``gr.Blocks`` (``ctx``: a DemoContext)."""
    default_run = str(ctx.run_path(RUN_KEY))
    ui = SimpleNamespace(
        run_state=gr.State(default_run),
        example_files=gr.State(None),  # the generated example set: one list of paths per slot
        example_paths=gr.State([]),  # the loaded run's class examples, in gallery order
    )
    gr.Markdown("### CLIP few-shot: adapted vs zero-shot\n" + ctx.model_note(RUN_KEY))
    banner = ctx.banner("clip", [RUN_KEY])
    ui.loaded = gr.Markdown(elem_id="clip-loaded")
    _train_panel(ui)
    _classify_panel(ui, default_run)
    ui.view = [ui.loaded, ui.class_examples, ui.example_paths]  # what a loaded run shows
    h = _handlers(ctx)
    _wire(ui, h)
    ctx.gate(
        banner,
        [RUN_KEY],
        [ui.classify_btn],
        own_run=ui.run_state,
        default=default_run,
        also=(h.on_ready, ui.view),
    )


def build_app(ctx) -> gr.Blocks:
    return ctx.single_app("CLIP few-shot", "CLIP few-shot", [RUN_KEY], build_tab)
