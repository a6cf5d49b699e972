"""What every Gradio app shares: upload checks, error handling, model caching, progress.

- ``check_image`` / ``check_audio``: validate an upload (type, size in bytes, image
  dimensions, audio duration) and raise ``ValueError`` with a message naming the file.
- ``guarded``: wraps an event handler so a ``ValueError`` becomes a ``gr.Error`` shown in the
  page, and any other exception is logged with its traceback on the server and shown as a
  one-line message; the app keeps serving either way.
- ``ModelCache``: loaded models shared by all sessions, keyed by run folder and file times,
  each with its own lock, so two sessions never toggle one model's adapters at once.
- ``StepProgress``: a Lightning callback that reports step / max_steps and the loss to a
  ``gr.Progress`` and to a list the page plots live.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import lightning as L
import numpy as np
from PIL import Image, UnidentifiedImageError

log = logging.getLogger("lorakit.apps")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".webm")


@dataclass(frozen=True)
class Limits:
    """Upload limits applied by every app."""

    image_bytes: int = 10 * 2**20
    image_min_side: int = 16
    image_max_side: int = 4096
    audio_bytes: int = 20 * 2**20
    audio_seconds: float = 30.0


LIMITS = Limits()


def runs_root(path: str | os.PathLike | None = None) -> Path:
    """Where pre-made runs live: ``path``, ``$LORAKIT_RUNS``, or ``~/.cache/lorakit/runs``."""
    root = path or os.environ.get("LORAKIT_RUNS") or Path.home() / ".cache" / "lorakit" / "runs"
    return Path(root).expanduser()


def _upload_path(upload, kind: str) -> Path:
    if upload is None:
        raise ValueError(f"no {kind} given: upload a file first")
    # gradio passes str paths (NamedString); tempfile-like objects carry the path in .name
    path = Path(
        upload if isinstance(upload, str | os.PathLike) else getattr(upload, "name", upload)
    )
    if not path.is_file():
        log.warning("upload %s is not a file", path)
        raise ValueError(f"{kind} upload {path.name} could not be read (file is missing)")
    return path


def _checked_upload(upload, kind: str, suffixes, max_bytes: int) -> Path:
    """The upload's path after the type and size checks every upload gets."""
    path = _upload_path(upload, kind)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{path.name}: not a supported {kind} type; use {', '.join(suffixes)}")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(
            f"{path.name}: {size / 2**20:.1f} MB is over the {max_bytes / 2**20:.0f} MB limit"
        )
    return path


def check_image(upload, limits: Limits = LIMITS) -> Image.Image:
    """An uploaded image file -> RGB ``PIL.Image``; ``ValueError`` for a bad upload."""
    path = _checked_upload(upload, "image", IMAGE_SUFFIXES, limits.image_bytes)
    name = path.name
    unreadable = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError)
    try:
        im = Image.open(path)  # lazy: reads the header only
    except unreadable as e:
        raise ValueError(f"{name}: not a readable image ({e.__class__.__name__})") from None
    with im:
        check_dimensions(im, name, limits)  # before decoding (a small file can be 1 GB)
        try:
            im.load()
            return im.convert("RGB")
        except unreadable as e:
            raise ValueError(f"{name}: not a readable image ({e.__class__.__name__})") from None


def check_dimensions(img: Image.Image, name: str, limits: Limits = LIMITS) -> Image.Image:
    w, h = img.size
    if min(w, h) < limits.image_min_side:
        raise ValueError(
            f"{name}: {w}x{h} px is too small (at least {limits.image_min_side} px a side)"
        )
    if max(w, h) > limits.image_max_side:
        raise ValueError(
            f"{name}: {w}x{h} px is too large (at most {limits.image_max_side} px a side)"
        )
    return img


def check_array_image(arr, name: str = "image", limits: Limits = LIMITS) -> np.ndarray:
    """A ``gr.Image(type="numpy")`` value -> uint8 (H, W, 3); ``ValueError`` when missing/odd."""
    if arr is None:
        raise ValueError(f"no {name} given: upload or pick one first")
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"{name}: expected a colour image, got an array of shape {arr.shape}")
    check_dimensions(Image.fromarray(arr[..., :3].astype(np.uint8)), name, limits)
    return arr[..., :3].astype(np.uint8)


def check_audio(upload, limits: Limits = LIMITS):
    """An uploaded/recorded audio file -> mono float32 waveform at 16 kHz (torch ``(T,)``)."""
    from lorakit.data.audio import load_audio

    path = _checked_upload(upload, "audio", AUDIO_SUFFIXES, limits.audio_bytes)
    name = path.name
    try:
        return load_audio(path, max_duration=limits.audio_seconds)
    except ValueError as e:
        raise ValueError(str(e).replace(str(path), name)) from None


def guarded(fn: Callable) -> Callable:
    """Event-handler wrapper: clear in-page errors, never a traceback in the page."""

    def report(e: Exception):
        if isinstance(e, gr.Error):
            return e
        if isinstance(e, ValueError):  # ours are one line; a library's may not be
            return gr.Error((str(e).strip().splitlines() or [""])[0][:300])
        log.exception("request failed in %s", fn.__name__)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        return gr.Error(
            f"The app is still running, but this request failed in {fn.__name__}: "
            f"{e.__class__.__name__}: {first}. Try again or with another input."
        )

    if _is_generator(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - every failure becomes a message in the page
                raise report(e) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - every failure becomes a message in the page
            raise report(e) from None

    return wrapper


def _is_generator(fn: Callable) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


class ModelCache:
    """Process-wide cache of loaded models: ``get(key, loader) -> (model, lock)``.

    ``key`` should include what invalidates the entry (run folder + adapter file times).
    Use the returned lock around inference that switches adapters on and off.
    """

    def __init__(self, capacity: int = 6):
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, loader: Callable[[], object]):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        item = (loader(), threading.Lock())
        with self._lock:
            self._items[key] = item
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return item


MODELS = ModelCache()

# One training job at a time in this process: the demo machine may have only a few cores.
TRAIN_LOCK = threading.Lock()


def folder_key(folder: Path) -> tuple:
    """A cache key that changes when a run folder's adapter or config is rewritten."""
    folder = Path(folder).resolve()
    stamps = []
    for sub in ("config.yaml", "adapter"):
        p = folder / sub
        if p.is_dir():
            stamps += [(f.name, f.stat().st_mtime_ns) for f in sorted(p.iterdir()) if f.is_file()]
        elif p.is_file():
            stamps.append((p.name, p.stat().st_mtime_ns))
    return (str(folder), tuple(stamps))


def demo_temp_root() -> Path:
    """The apps' own scratch folder (runs trained in the page, audio, plots)."""
    return Path(tempfile.gettempdir()) / "lorakit-demo"


def inside(path: Path, roots) -> bool:
    """``path`` (symlinks resolved) lies under one of ``roots``."""
    real = Path(path).resolve()
    return any(real.is_relative_to(Path(r).resolve()) for r in roots)


PRIVATE_IN_RUN = ("checkpoints", "adapter")


def served_paths(runs: Path, keys) -> dict:
    """``launch`` keywords: the runs folder is served for what pages show (plots, example
    images), never a run's checkpoints or adapter files."""
    runs = Path(runs)
    folders = {runs / k for k in keys}
    if runs.is_dir():
        folders |= {p for p in runs.iterdir() if p.is_dir()}
    blocked = [str(f / name) for f in sorted(folders) for name in PRIVATE_IN_RUN]
    return {"allowed_paths": [str(runs)], "blocked_paths": blocked}


def require_run(folder, pipeline: str, roots=None) -> Path:
    """A run folder that holds ``config.yaml`` and ``metrics.json``, or a clear ``ValueError``.

    With ``roots`` (what a server passes), only folders under them are accepted; any other
    path gets the same one line whether it exists or not, so a client learns nothing of
    the server's file system."""
    if folder is None or not str(folder).strip():
        raise ValueError(f"no {pipeline} run folder given")
    path = Path(str(folder).strip()).expanduser()
    if roots is not None and not inside(path, roots):
        raise ValueError(
            f"that {pipeline} run folder is not offered by this server: "
            "load a run from its runs folder"
        )
    if not (path / "config.yaml").is_file():
        raise ValueError(
            f"{path} is not a finished lorakit {pipeline} run (config.yaml is missing); "
            "wait for the pre-made run or train one with "
            f"`lorakit train {pipeline} --out {path}`"
        )
    return path


def eta_text(seconds: float) -> str:
    """``0:42`` or ``1:05:10``: the rest of a phase at the pace so far."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class StepProgress(L.Callback):
    """Reports training progress: ``progress(step / max_steps, desc=...)`` with an ETA from
    the pace since this process's first step (a resumed run counts from where it resumed),
    and ``losses`` [(step, loss)]."""

    def __init__(self, progress: Callable | None = None, desc: str = "training", clock=None):
        self.progress, self.desc = progress, desc
        self.losses: list[tuple[int, float]] = []
        self.step, self.total = 0, 0
        self.clock = clock or time.monotonic
        self._first: tuple[int, float] | None = None  # (step, time) of the first step seen

    def eta(self) -> str | None:
        """Time left at the pace so far, or None before two steps were seen."""
        if self._first is None or self.step <= self._first[0] or not self.total:
            return None
        step0, t0 = self._first
        per_step = (self.clock() - t0) / (self.step - step0)
        return eta_text(per_step * (self.total - self.step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.step, self.total = int(trainer.global_step), int(trainer.max_steps or 0)
        if self._first is None:
            self._first = (self.step, self.clock())
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.losses.append((self.step, float(loss.detach())))
        if self.progress is not None and self.total:
            eta = self.eta()
            self.progress(
                self.step / self.total,
                desc=f"{self.desc}: step {self.step}/{self.total}"
                + (f", ETA {eta}" if eta else ""),
            )


def loss_figure(losses: list[tuple[int, float]], title: str = "training loss"):
    """A small matplotlib figure of (step, loss) pairs for ``gr.Plot``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 2.6))
    if losses:
        steps, values = zip(*losses, strict=True)
        ax.plot(steps, values, color="#d9480f", lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def theme():
    """Gradio's default theme with font files that hold every letter. The bundled Source
    Sans Pro SemiBold (600) has only a few glyphs, so bold headings drew a capital A from it
    and the rest from another face ("SᴀM"); Regular (400) and Bold (700) are complete, and
    600-weight text then uses the Bold face."""
    return gr.themes.Default(
        font=(
            gr.themes.LocalFont("Source Sans Pro", weights=(400, 700)),
            "ui-sans-serif",
            "system-ui",
            "sans-serif",
        )
    )


def status_line(kind: str, text: str) -> str:
    """A one-line markdown notice: kind is ``ok``, ``info`` or ``warn`` (plain words: headless
    and minimal systems often lack emoji fonts)."""
    tag = {"ok": "**Model:**", "info": "**Note:**", "warn": "**Warning:**"}.get(kind, "")
    return f"{tag} {text}"


class DemoContext:
    """What the apps of one server share: the runs folder, the pre-made run specs and their
    build status, and the page-load handlers to register once the page is assembled."""

    def __init__(self, runs: Path, specs: list, status):
        self.runs, self.status = Path(runs), status
        self.specs = {s.key: s for s in specs}
        self._loads: list[tuple] = []

    @property
    def roots(self) -> tuple[Path, Path]:
        """The only folders a client may load runs from."""
        return (self.runs, demo_temp_root())

    def run_path(self, key: str) -> Path:
        return self.runs / key

    def model_note(self, key: str) -> str:
        spec = self.specs.get(key)
        if spec is None:
            return status_line("warn", f"no pre-made run {key!r} in this profile")
        if spec.real_weights:
            return status_line("ok", f"Runs on real weights: {spec.model}.")
        return status_line(
            "info",
            f"Runs on a {spec.model}, built offline: no real pretrained weights are "
            "present, so results show the method working, not real-world quality.",
        )

    def run_message(self, key: str) -> str:
        """One line about a pre-made run's state (building 40%, ready, failed: why)."""
        row = self.status.get(key) if self.status is not None else {"state": "ready"}
        state = row.get("state", "pending")
        if state == "building":
            done = f" ({row.get('fraction', 0):.0%})" if row.get("steps_known", True) else ""
            return f"pre-made run {key} is being built{done}; try again shortly (progress on the Overview tab)"
        if state in ("failed", "unavailable"):
            return f"pre-made run {key} is {state}: {row.get('message', '')}"
        if state == "pending":
            return f"pre-made run {key} is waiting to be built"
        return f"pre-made run {key} is ready"

    def progress_text(self, key: str) -> str:
        """``40 %`` (training steps done) or ``35 s so far`` when the steps are unknown."""
        row = self.status.get(key) if self.status is not None else {}
        if row.get("steps_known", True):
            return f"{row.get('fraction', 0.0):.0%}".replace("%", " %")
        return f"{time.time() - row.get('started', time.time()):.0f} s so far"

    def readiness(self, keys: list[str]) -> tuple[bool, bool, str]:
        """``(ready, settled, banner)`` for a tab needing the pre-made runs ``keys``: ready when
        all are built; settled when none is still pending or building; banner says why not."""
        rows = {
            k: (self.status.get(k) if self.status is not None else {"state": "ready"}) for k in keys
        }
        states = {k: r.get("state", "pending") for k, r in rows.items()}
        ready = all(s == "ready" for s in states.values())
        settled = all(s in ("ready", "failed", "unavailable") for s in states.values())
        lines = []
        for key, state in states.items():
            if state == "building":
                lines.append(f"**Building the pre-made run `{key}` ({self.progress_text(key)})**")
            elif state == "pending":
                lines.append(
                    f"**The pre-made run `{key}` is waiting to be built** (one run at a time)"
                )
            elif state in ("failed", "unavailable"):
                lines.append(
                    f"**The pre-made run `{key}` is {state}:** {rows[key].get('message', '')}"
                )
        if lines and not settled:
            lines.append(
                "This tab enables itself when it is ready; the Overview tab shows every run's progress."
            )
        return ready, settled, "<br>".join(lines)

    def gate(
        self, banner, keys: list[str], controls: list, own_run=None, default=None, also=None
    ) -> None:
        """Keep ``controls`` disabled and ``banner`` saying why until the runs ``keys`` are
        ready (checked every 2 s, then the timer stops). With ``own_run`` (a ``gr.State``), a
        session that switched to a run of its own (value != ``default``) is enabled anyway.
        ``also = (fn, outputs)``: once ready, ``fn(own_run value)`` fills ``outputs`` too."""
        timer = gr.Timer(2.0, active=True)
        extra_fn, extra_out = also or (None, [])

        def refresh(*state):
            ready, settled, text = self.readiness(keys)
            on = ready or (bool(state) and state[0] not in (None, default))
            extra = extra_fn(*state) if (extra_fn and on) else [gr.skip()] * len(extra_out)
            return (
                gr.update(value=text, visible=bool(text)),
                *[gr.update(interactive=on) for _ in controls],
                gr.Timer(active=not settled),
                *(extra if isinstance(extra, list | tuple) else [extra]),
            )

        inputs = [own_run] if own_run is not None else None
        outputs = [banner, *controls, timer, *extra_out]
        timer.tick(refresh, inputs, outputs, show_progress="hidden")
        self.on_page_load(refresh, inputs, outputs)

    def require(self, folder, key: str, pipeline: str) -> Path:
        """``require_run`` with a message about the pre-made run when that is what is missing."""
        if (
            str(folder).strip() == str(self.run_path(key))
            and not (self.run_path(key) / "metrics.json").is_file()
        ):
            raise ValueError(self.run_message(key))
        return require_run(folder, pipeline, self.roots)

    def header(self, title: str, keys: list[str]) -> None:
        gr.Markdown(f"# lorakit: {title}")

    def single_app(
        self, title: str, heading: str, keys: list[str], build_tab: Callable
    ) -> gr.Blocks:
        """One pipeline's tab as a page of its own (``lorakit demo clip`` and friends)."""
        with gr.Blocks(title=f"lorakit: {title}") as demo:
            self.header(heading, keys)
            build_tab(self)
            self.finish(demo)
        return demo

    def banner(self, name: str, keys: list[str]):
        """The tab's readiness banner (fill it in with ``gate`` once the controls exist)."""
        _, _, text = self.readiness(keys)
        return gr.Markdown(text, visible=bool(text), elem_id=f"{name}-readiness")

    def on_page_load(self, fn: Callable, inputs, outputs) -> None:
        self._loads.append((fn, inputs, outputs))

    def finish(self, demo) -> None:
        """Register the collected page-load handlers on ``demo`` (call inside its context);
        gradio's result files are written atomically from here on (``cache_writes``)."""
        from lorakit.apps.web import cache_writes

        cache_writes.install()
        for fn, inputs, outputs in self._loads:
            demo.load(guarded(fn), inputs, outputs)
        self._loads.clear()
