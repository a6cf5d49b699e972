"""Camouflage app (SAM + FoRA): prompt an image with clicked points, a box or a scribble;
see SAM zero-shot and the FoRA-adapted mask as overlays, scored (S-measure, MAE) when a
ground-truth mask is known (a generated scene, or an uploaded mask).

Per-session state (``gr.State``) holds the scene: image, ground truth, scribble, points.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import cv2
import gradio as gr
import numpy as np
import torch

from lorakit.apps.web.common import MODELS, check_image, folder_key, guarded
from lorakit.apps.web.prebuilt import pipeline_module

RUN_KEY = "cod-fora"
# image inputs that hand the handlers the uploaded file's path, undecoded (image_mode=None:
# gradio's default "RGB" decodes and re-saves every non-RGB upload, a 17 KB 1-bit 12000 px
# PNG included, before check_image reads its size from the header)
VIEW = 256  # px the result overlays of small scenes are enlarged to
INPUT_IMAGE = dict(type="filepath", format="png", image_mode=None, sources=["upload"], height=200)
MODES = ("points", "box", "scribble")
FG_COLOR, BG_COLOR = (255, 40, 40), (40, 120, 255)


@dataclass
class Scene:
    """One session's input: image (H, W, 3) uint8, optional gt (H, W) bool, scribble (H, W)
    {0, 1, 2}, clicked points [[x, y, label 1/0]] in image pixels."""

    image: np.ndarray
    gt: np.ndarray | None = None
    scribble: np.ndarray | None = None
    points: list = field(default_factory=list)
    box: list | None = None
    name: str = "upload"


def load_models(folder):
    """(FoRA model, SAM zero-shot model) of a run folder; both eval mode."""
    from lorakit.data.runs import RunFolder
    from lorakit.vision.sam.build import BackboneConfig, build_sam
    from lorakit.vision.sam.model import AdapterSpec, SamCOD

    mod = pipeline_module("cod")
    run = RunFolder(folder)
    cfg = run.read_config()
    adapted = mod.load_model(run, cfg).eval()
    base = build_sam(BackboneConfig(**cfg["backbone"]))
    return adapted, SamCOD(base, AdapterSpec(method="none")).eval()


def get_models(ctx, folder) -> tuple[tuple, threading.Lock]:
    path = ctx.require(folder, RUN_KEY, "cod")
    return MODELS.get(("cod",) + folder_key(path), lambda: load_models(path))


def generated_scene(
    seed: int, size: int = 128, difficulty: float = 0.5, cue: str = "colour"
) -> Scene:
    """A generated scene like the pre-made run's (colour-cued, see apps/web/prebuilt.py)."""
    from lorakit.data.camouflage import make_scribble, mask_box, render_scene

    rng = np.random.default_rng(int(seed))
    image, mask = render_scene(rng, size, difficulty, cue)
    return Scene(image, mask, make_scribble(mask, rng), box=mask_box(mask), name=f"scene {seed}")


def scene_files(scene: Scene) -> tuple[str, str, str]:
    """PNG files of a generated scene's image, ground truth (white = object) and scribble
    (red = object, blue = background strokes), so the input widgets show them."""
    import tempfile
    import uuid

    from PIL import Image

    folder = Path(tempfile.gettempdir()) / "lorakit-demo" / f"cod-{uuid.uuid4().hex[:10]}"
    folder.mkdir(parents=True, exist_ok=True)
    strokes = np.zeros_like(scene.image)
    strokes[scene.scribble == 1], strokes[scene.scribble == 2] = FG_COLOR, BG_COLOR
    paths = []
    for name, arr in (
        ("scene", scene.image),
        ("ground_truth", (scene.gt.astype(np.uint8) * 255)),
        ("scribble", strokes),
    ):
        paths.append(str(folder / f"{name}.png"))
        Image.fromarray(arr).save(paths[-1])
    return tuple(paths)


def read_mask(upload, shape: tuple[int, int], what: str) -> np.ndarray:
    """An uploaded mask/scribble image -> (H, W) uint8 at the image's size."""
    img = np.asarray(check_image(upload))
    if img.shape[:2] != shape:
        raise ValueError(
            f"the {what} is {img.shape[1]}x{img.shape[0]} px but the image is {shape[1]}x{shape[0]} px"
        )
    return img


def scribble_from(img: np.ndarray) -> np.ndarray:
    """A scribble upload: grey values {0, 1, 2} (the S-COD convention) or red = object,
    blue = background strokes on black."""
    grey = img[..., 0]
    if (img[..., 0] == img[..., 1]).all() and set(np.unique(grey)) <= {0, 1, 2}:
        return grey.astype(np.uint8)
    r, g, b = (img[..., i].astype(int) for i in range(3))
    out = np.zeros(img.shape[:2], np.uint8)
    out[(r > 128) & (r > g + 60) & (r > b + 60)] = 1
    out[(b > 128) & (b > r + 60) & (b > g + 60)] = 2
    if not (out == 1).any():
        raise ValueError("the scribble has no object strokes: draw them red (or grey value 1)")
    return out


def parse_box(text: str, shape: tuple[int, int]) -> list[float]:
    try:
        box = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"box {text!r}: give four numbers x0, y0, x1, y1") from None
    if len(box) != 4:
        raise ValueError(f"box {text!r}: give four numbers x0, y0, x1, y1")
    x0, y0, x1, y1 = box
    h, w = shape
    if not (0 <= x0 < x1 < w and 0 <= y0 < y1 < h):
        raise ValueError(f"box {text!r} must satisfy 0 <= x0 < x1 < {w} and 0 <= y0 < y1 < {h}")
    return box


def image_prompt(scene: Scene, mode: str, box_text: str) -> tuple[np.ndarray | None, list | None]:
    """The prompt the models get, in image pixels: ``(points (N, 3) x, y, label, box)``.
    An empty box is the generated scene's box, or the uploaded ground truth's."""
    from lorakit.data.camouflage import mask_box
    from lorakit.vision.sam.prompts import points_from_scribble

    if mode == "points":
        if not any(p[2] == 1 for p in scene.points):
            raise ValueError("click the object at least once (foreground point) before segmenting")
        return np.asarray(scene.points, np.float32), None
    if mode == "box":
        if box_text.strip():
            return None, parse_box(box_text, scene.image.shape[:2])
        if scene.box is not None:
            return None, list(scene.box)
        if scene.gt is not None and scene.gt.any():
            return None, list(mask_box(scene.gt))
        raise ValueError("give a box as x0, y0, x1, y1 (image pixels), or upload a ground truth")
    if mode == "scribble":
        if scene.scribble is None:
            raise ValueError(
                "no scribble: generate a scene (it has one) or upload a scribble image"
            )
        rng = np.random.default_rng(0)
        return points_from_scribble(scene.scribble, rng, 3, 3, scene.name), None
    raise ValueError(f"prompt mode must be one of {', '.join(MODES)}")


def make_prompt(scene: Scene, mode: str, box_text: str, size: int):
    """The session's prompt in model-input pixels (a ``SamCOD`` ``Prompt``)."""
    points, box = image_prompt(scene, mode, box_text)
    return model_prompt(points, box, scene.image.shape[:2], size)


def model_prompt(points, box, hw: tuple[int, int], size: int):
    """``image_prompt``'s points or box, resized from image pixels ``hw`` to the model's."""
    from lorakit.vision.sam.model import Prompt
    from lorakit.vision.sam.prompts import resize_box, resize_points

    if points is not None:
        return Prompt(points=torch.from_numpy(resize_points(points, hw, size)))
    return Prompt(box=torch.from_numpy(resize_box(box, hw, size)))


def draw_used_prompt(img: np.ndarray, points, box, k: int) -> np.ndarray:
    """Mark the prompt the models got on an (enlarged by ``k``) result: points as dots (red
    object, blue background), the box as a yellow rectangle."""
    out = img.copy()
    r = max(2, min(out.shape[:2]) // 60)
    if box is not None:
        x0, y0, x1, y1 = (int(round(v * k)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 220, 0), max(1, k // 2))
    for x, y, lab in points if points is not None else []:
        c = (int(x * k + k // 2), int(y * k + k // 2))
        cv2.circle(out, c, r, FG_COLOR if lab == 1 else BG_COLOR, -1)
        cv2.circle(out, c, r, (255, 255, 255), 1)
    return out


@torch.no_grad()
def segment(model, image: np.ndarray, prompt) -> np.ndarray:
    """Probability map (H, W) in [0, 1] at the image's own size."""
    from lorakit.vision.sam.dataset import to_tensor

    h, w = image.shape[:2]
    size = model.size
    x = to_tensor(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))[None]
    logits, _ = model(x, [prompt])
    return cv2.resize(logits[0, 0].sigmoid().numpy(), (w, h), interpolation=cv2.INTER_LINEAR)


def scores(prob: np.ndarray, gt: np.ndarray) -> dict:
    """S-measure and MAE of the mask shown (``prob > 0.5``) and of the probability map as
    COD benchmarks score it (pysodmetrics stretches each map to [0, 1], min-max), IoU of the
    shown mask, and the mean probability on the background (a haze under the threshold:
    invisible in a mask, counted by the map's MAE)."""
    from lorakit.vision.sam.evaluate import SODScores

    gt = gt.astype(bool)
    shown = prob > 0.5
    out = {}
    for key, m in (("map", prob), ("mask", shown.astype(np.float32))):
        s = SODScores()
        s.add(m, gt)
        r = s.results()
        out[f"S-measure ({key})"], out[f"MAE ({key})"] = r["s_measure"], r["mae"]
    out["IoU"] = float((shown & gt).sum() / max(1, (shown | gt).sum()))
    out["background p"] = float(prob[~gt].mean()) if (~gt).any() else 0.0
    return out


def score_lines(sb: dict, sa: dict, name: str) -> list[str]:
    """The scores table, and one sentence where the probability maps and the masks shown
    disagree on which model is better."""
    lines = [
        "",
        "| model | IoU (mask shown) | S-measure (mask) | MAE (mask) | S-measure (map) "
        "| MAE (map) | mean p on background |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, sc in (("SAM zero-shot", sb), (f"SAM + {name}", sa)):
        lines.append(
            f"| {label} | {sc['IoU']:.3f} | {sc['S-measure (mask)']:.3f} | "
            f"{sc['MAE (mask)']:.3f} | {sc['S-measure (map)']:.3f} | {sc['MAE (map)']:.3f} "
            f"| {sc['background p']:.2f} |"
        )
    mask_says = sa["MAE (mask)"] < sb["MAE (mask)"]
    map_says = sa["MAE (map)"] < sb["MAE (map)"]
    if mask_says != map_says:
        lines += [
            "",
            "The masks and the maps disagree: COD benchmarks score the probability map after "
            "stretching it to [0, 1] (min-max), so a faint map counts like a confident one, and "
            "a background haze below the 0.5 threshold counts although no mask shows it (mean "
            f"p on the background: {name} {sa['background p']:.2f}, zero-shot "
            f"{sb['background p']:.2f}). The mask columns score what the images show.",
        ]
    return lines


def draw_prompts(scene: Scene) -> np.ndarray:
    """The image with clicked points (red object, blue background) and the scribble."""
    out = scene.image.copy()
    if scene.scribble is not None:
        out[scene.scribble == 1] = FG_COLOR
        out[scene.scribble == 2] = BG_COLOR
    r = max(2, min(out.shape[:2]) // 50)
    for x, y, lab in scene.points:
        cv2.circle(out, (int(x), int(y)), r, FG_COLOR if lab == 1 else BG_COLOR, -1)
        cv2.circle(out, (int(x), int(y)), r, (255, 255, 255), 1)
    return out


def run_both(ctx, folder, scene: Scene, mode: str, box_text: str):
    """(zero-shot overlay, adapted overlay, scores markdown). The overlays tint each pixel by
    the model's probability and outline the mask (``p > 0.5``); the prompt is drawn on both."""
    from lorakit.vision.sam.evaluate import overlay

    if scene is None:
        raise ValueError("no image yet: upload one or generate a scene")
    (adapted, base), lock = get_models(ctx, folder)
    points, box = image_prompt(scene, mode, box_text)
    prompt = model_prompt(points, box, scene.image.shape[:2], adapted.size)
    with lock:
        p_base, p_adapted = (
            segment(base, scene.image, prompt),
            segment(adapted, scene.image, prompt),
        )
    name = method_label(adapted.spec.method)
    lines = [
        f"**prompt:** {mode} | **image:** {scene.name} ({scene.image.shape[1]}x{scene.image.shape[0]})"
    ]
    if scene.gt is not None:
        lines += score_lines(scores(p_base, scene.gt), scores(p_adapted, scene.gt), name)
    else:
        lines.append("no ground-truth mask: upload one to get S-measure and MAE")
    k = max(1, VIEW // max(scene.image.shape[:2]))  # small scenes: enlarge, pixel for pixel
    return tuple(
        draw_used_prompt(enlarge(overlay(scene.image, p, color), k), points, box, k)
        for p, color in ((p_base, (255, 64, 32)), (p_adapted, (32, 220, 64)))
    ) + ("\n".join(lines),)


def method_label(method: str) -> str:
    """The method's name as the papers write it (FoRA, LoRA, S2-LoRA), not upper-cased."""
    from lorakit.core.table import display_name

    return display_name(method)


def enlarge(img: np.ndarray, k: int) -> np.ndarray:
    return cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST) if k > 1 else img


# --------------------------------------------------------------------------- page


def _input_panel(ui: SimpleNamespace) -> None:
    """Scene seed and Generate, the image/ground-truth/scribble uploads, the click canvas."""
    with gr.Row():
        with gr.Column():
            with gr.Row():
                ui.seed = gr.Number(
                    value=1, precision=0, label="scene seed", min_width=80, elem_id="cod-seed"
                )
                ui.generate = gr.Button("Generate a camouflage scene", elem_id="cod-generate")
            with gr.Row():
                ui.upload = gr.Image(
                    label="image (or upload)", elem_id="cod-upload", **INPUT_IMAGE
                )
                ui.gt_upload = gr.Image(
                    label="ground truth (white = object)", elem_id="cod-gt", **INPUT_IMAGE
                )
                ui.scribble_upload = gr.Image(
                    label="scribble (red object, blue background)",
                    elem_id="cod-scribble",
                    **INPUT_IMAGE,
                )
        with gr.Column():
            # default size: clicks map to image pixels through the <img> box
            ui.canvas = gr.Image(
                label="click to add points", interactive=False, elem_id="cod-canvas"
            )
            with gr.Row():
                ui.label = gr.Radio(
                    ["object", "background"],
                    value="object",
                    label="next click is",
                    elem_id="cod-label",
                )
                ui.clear = gr.Button("Clear points", size="sm", elem_id="cod-clear")


def _run_panel(ctx, ui: SimpleNamespace) -> None:
    """Prompt mode, box and run folder, Segment, the two masks and the scores."""
    with gr.Row():
        ui.mode = gr.Radio(list(MODES), value="points", label="prompt", elem_id="cod-mode")
        ui.box = gr.Textbox(
            label="box x0, y0, x1, y1 (empty: the scene's box, or the ground truth's)",
            elem_id="cod-box",
        )
        ui.folder = gr.Textbox(
            label="run folder", value=str(ctx.run_path(RUN_KEY)), elem_id="cod-folder"
        )
    ui.go = gr.Button("Segment", variant="primary", interactive=False, elem_id="cod-segment")
    with gr.Row():
        ui.base_out = gr.Image(
            label="SAM zero-shot (red: its mask)", interactive=False, elem_id="cod-base"
        )
        ui.adapted_out = gr.Image(
            label="SAM + FoRA (green: its mask)", interactive=False, elem_id="cod-adapted"
        )
    gr.Markdown(
        "Masks: the tint's strength is the model's object probability; the outline is the "
        "mask, where it is above 0.5 (red: SAM zero-shot, green: SAM + FoRA). The prompt the "
        "models got is drawn on both: red object points, blue background points, a yellow "
        "box. In the prompt image, red marks object points and strokes, blue background ones.",
        elem_id="cod-legend",
    )
    ui.result = gr.Markdown(elem_id="cod-result")


def on_upload(f):
    s = Scene(np.asarray(check_image(f)), name=f.split("/")[-1] if isinstance(f, str) else "upload")
    return s, draw_prompts(s), None, None, "points", None, None, ""


def on_generate(n, m):
    s = generated_scene(int(n or 0))
    # no clicks yet: Segment uses the scene's scribble; a click switches to points
    m = "scribble" if m == "points" else m
    note = (
        f"scene {int(n or 0)} generated with its ground truth and a scribble: "
        f"Segment uses its {m}, or click the object to prompt with points"
    )
    return (s, draw_prompts(s), note, m, None, None, *scene_files(s))


def on_gt(s, f):
    if s is None:
        raise ValueError("load an image before its ground-truth mask")
    s.gt = read_mask(f, s.image.shape[:2], "ground-truth mask").max(axis=2) > 127
    return s, "ground truth loaded"


def on_scribble(s, f):
    if s is None:
        raise ValueError("load an image before its scribble")
    s.scribble = scribble_from(read_mask(f, s.image.shape[:2], "scribble"))
    return s, draw_prompts(s)


def on_click(s, which, evt: gr.SelectData):
    if s is None:
        raise ValueError("load an image first")
    x, y = evt.index[:2]
    s.points.append([int(x), int(y), 1 if which == "object" else 0])
    return s, draw_prompts(s), "points"


def on_clear(s):
    if s is None:
        return s, None
    s.points.clear()
    return s, draw_prompts(s)


def _wire(ctx, ui: SimpleNamespace) -> None:
    """Every event of the tab: a new image or scene clears the old results first."""
    outs = [ui.base_out, ui.adapted_out]
    ui.upload.upload(
        guarded(on_upload),
        ui.upload,
        [ui.scene, ui.canvas, ui.gt_upload, ui.scribble_upload, ui.mode, *outs, ui.result],
    )
    ui.generate.click(
        guarded(on_generate),
        [ui.seed, ui.mode],
        [ui.scene, ui.canvas, ui.result, ui.mode, *outs,
         ui.upload, ui.gt_upload, ui.scribble_upload],
    )
    ui.gt_upload.upload(guarded(on_gt), [ui.scene, ui.gt_upload], [ui.scene, ui.result])
    ui.scribble_upload.upload(
        guarded(on_scribble), [ui.scene, ui.scribble_upload], [ui.scene, ui.canvas]
    )
    ui.canvas.select(guarded(on_click), [ui.scene, ui.label], [ui.scene, ui.canvas, ui.mode])
    ui.clear.click(guarded(on_clear), ui.scene, [ui.scene, ui.canvas])
    ui.go.click(lambda: (None, None, ""), None, [*outs, ui.result]).then(
        guarded(lambda f, s, m, b: run_both(ctx, f, s, m, b)),
        [ui.folder, ui.scene, ui.mode, ui.box],
        [*outs, ui.result],
        concurrency_id="infer",
    )


def build_tab(ctx) -> None:
    ui = SimpleNamespace(scene=gr.State(None))
    gr.Markdown(
        "### Camouflaged object detection: SAM zero-shot vs SAM + FoRA\n" + ctx.model_note(RUN_KEY)
    )
    banner = ctx.banner("cod", [RUN_KEY])
    _input_panel(ui)
    _run_panel(ctx, ui)
    _wire(ctx, ui)
    ctx.gate(banner, [RUN_KEY], [ui.go])


def build_app(ctx) -> gr.Blocks:
    return ctx.single_app("camouflage", "camouflaged object detection", [RUN_KEY], build_tab)
