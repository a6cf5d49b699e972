"""``lorakit compare``: several methods on one pipeline, same budget, same lr sweep, seeds.

    plan = make_plan("clip", ["lora", "vera"], config=Path("demos/clip.yaml"), ...)
    records = run_plan(plan, echo=print)      # one run per (method, lr, seed)
    summary = write_report(plan, records)     # compare.csv / .md / .png, metrics.json

Each run trains with the pipeline's own ``train`` (test metrics: its return value), then
the pipeline's ``evaluate`` scores the saved adapter on the VALIDATION split
(``compare_pipelines``). The lr is chosen per method on the mean validation metric over
seeds; test numbers of the chosen lr are reported (``compare_stats.choose_lr``).

Out folder: ``compare.json`` (the plan), ``runs/<method>/lr_<lr>/seed_<seed>/`` (the
pipeline's run folder ``run/`` and this run's ``metrics.json``, written atomically last),
``_data/`` (validation data), and the report. A re-run of the same command skips runs
whose ``metrics.json`` exists for the same configuration (a killed run resumes from its
checkpoint inside the pipeline). That ``metrics.json`` holds the test and validation scores;
the pipeline's own ``run/metrics.json`` may hold the validation scores once scored (the cod
and asr ``evaluate`` rewrite it). A run that raises is recorded in ``failed.json`` and
reported; the comparison goes on, and a re-run retries it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.apps.compare.pipelines import PIPELINES, PipelineSpec
from lorakit.core.methods import METHODS
from lorakit.data.runs import parse_value, read_json, set_dotted, write_json
from lorakit.data.runtime.compare_probe import StepProbe
from lorakit.data.vocabulary import load_pipeline_config
from lorakit.data.weight_methods import is_replacement


@dataclass
class Plan:
    """Everything a compare run does, validated (``make_plan``) before anything is written."""

    pipeline: str
    methods: list[str]
    lrs: list[float]
    seeds: list[int]
    base: dict  # the resolved pipeline config (config file + --set + --steps)
    method_sets: dict[str, list[tuple[str, object]]]
    out: Path
    metric: str
    higher_is_better: bool
    extra: tuple[str, ...] = ()
    configs: dict[str, dict] = field(default_factory=dict)  # method -> its config (no lr/seed)
    failures: list[dict] = field(default_factory=list)  # runs that raised (run_plan)

    @property
    def spec(self) -> PipelineSpec:
        return PIPELINES[self.pipeline]

    def runs(self) -> list[tuple[str, float, int]]:
        """``(method, lr, seed)`` with the methods innermost: a machine whose load drifts
        during a long comparison then slows every method alike (fairer step times)."""
        return [(m, lr, s) for s in self.seeds for lr in self.lrs for m in self.methods]

    def config(self, method: str, lr: float, seed: int) -> dict:
        cfg = copy.deepcopy(self.configs[method])
        set_dotted(cfg, self.spec.lr_key, lr)
        set_dotted(cfg, self.spec.seed_key, seed)
        return cfg

    def folder(self, method: str, lr: float, seed: int) -> Path:
        return self.out / "runs" / method / f"lr_{lr:g}" / f"seed_{seed}"


# --------------------------------------------------------------------------- parsing


def _split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ValueError(f"{what}: give a comma-separated list, got {text!r}")
    return items


def parse_methods(text: str, spec: PipelineSpec) -> list[str]:
    """``lora,vera`` or ``all`` (every registry method the pipeline hosts)."""
    if str(text).strip() == "all":
        return [m for m in METHODS if spec.hosts(m) is None]
    names = _split(text, "--methods")
    for name in names:
        if is_replacement(name):
            raise ValueError(
                f"{name!r} replaces the model's weights rather than adding an adapter, and "
                "compare runs adapters; train it with --set adapter.method="
                f"{name} (demos/clip_sltrain_full_vs_lora.py compares it with LoRA)"
            )
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}, all")
        why = spec.hosts(name)
        if why is not None:
            raise ValueError(f"method {name!r} cannot run on pipeline {spec.name!r}: {why}")
    if len(set(names)) != len(names):
        raise ValueError(f"--methods names a method twice: {text!r}")
    return names


def parse_seeds(text: str) -> list[int]:
    """``0,1,2``: distinct non-negative integers."""
    seeds = []
    for item in _split(text, "--seeds"):
        try:
            seed = int(item)
        except ValueError:
            raise ValueError(f"--seeds: {item!r} is not an integer (e.g. --seeds 0,1,2)") from None
        if seed < 0:
            raise ValueError(f"--seeds: {seed} is negative")
        seeds.append(seed)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a seed: {text!r}")
    return seeds


def parse_lrs(text: str) -> list[float]:
    """``1e-3,3e-3,1e-2``: distinct positive finite learning rates."""
    lrs = []
    for item in _split(text, "--lrs"):
        try:
            lr = float(item)
        except ValueError:
            raise ValueError(f"--lrs: {item!r} is not a number") from None
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"--lrs: {item!r} must be a positive number")
        lrs.append(lr)
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"--lrs repeats a learning rate: {text!r}")
    return sorted(lrs)


def parse_method_sets(items: list[str], methods: list[str]) -> dict:
    """``vera:method.r=64`` -> ``{"vera": [("method.r", 64)]}`` (dotted config keys)."""
    out: dict[str, list] = {}
    for item in items:
        name, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not key:
            raise ValueError(f"--method-set {item!r}: write METHOD:key.sub=value")
        if name not in methods:
            raise ValueError(f"--method-set {item!r}: {name!r} is not one of --methods")
        out.setdefault(name, []).append((key, parse_value(value)))
    return out


# --------------------------------------------------------------------------- the plan


def make_plan(
    pipeline: str,
    methods: str,
    *,
    config: Path | None = None,
    sets: list[str] = (),
    method_sets: list[str] = (),
    lrs: str | None = None,
    seeds: str = "0,1,2",
    steps: int | None = None,
    out: Path | None = None,
    metric: str | None = None,
) -> Plan:
    """Check every input (one-line ``ValueError``) and build the plan; writes nothing."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; choose from {', '.join(PIPELINES)}")
    spec = PIPELINES[pipeline]
    names = parse_methods(methods, spec)
    seed_list = parse_seeds(seeds)
    if config is not None and not Path(config).is_file():
        raise ValueError(f"config file {config} does not exist (examples: demos/*.yaml)")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"--steps must be positive, got {steps}")
    per_method = parse_method_sets(list(method_sets), names)
    mod = spec.load()
    base = load_pipeline_config(config, list(sets), mod.DEFAULTS, getattr(mod, "RENAMED", ()))
    if not any(s.startswith("trainer.progress=") for s in sets):
        set_dotted(base, "trainer.progress", False)  # one progress line per run instead
    if steps is not None:
        set_dotted(base, spec.steps_key, int(steps))
    lr_list = parse_lrs(lrs) if lrs else _default_lrs(base, spec)
    plan = Plan(
        pipeline, names, lr_list, seed_list, base, per_method,
        Path(out or Path("runs") / f"compare-{pipeline}"), metric or spec.metric,
        spec.higher_is_better if metric is None else _higher(metric), spec.extra,
    )
    given = [s.partition("=")[0] for s in sets if s.startswith(spec.section + ".")]
    for name in names:
        plan.configs[name] = _method_config(plan, name, given)
        try:
            spec.check(plan.config(name, lr_list[0], seed_list[0]))
        except ValueError as e:
            raise ValueError(f"method {name!r} on pipeline {pipeline!r}: {e}") from None
    spec.validation(base, plan.out / "_data", dry=True)
    return plan


def _higher(metric: str) -> bool:
    return not any(word in metric for word in ("wer", "cer", "mae", "loss", "error"))


def _default_lrs(base: dict, spec: PipelineSpec) -> list[float]:
    """The config's lr divided and multiplied by 3: the same three values for every method."""
    node = base
    for part in spec.lr_key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        raise ValueError(f"the config has no {spec.lr_key}; give --lrs")
    lr = float(node)
    return sorted({float(f"{lr / 3:.3g}"), lr, float(f"{lr * 3:.3g}")})


def _method_config(plan: Plan, name: str, given: list[str]) -> dict:
    """The base config with method ``name`` (registry defaults, see ``compare_pipelines``);
    --set keys of the method section apply to every method, then its --method-set keys."""
    spec = plan.spec
    cfg = copy.deepcopy(plan.base)
    cfg[spec.section] = spec.method_section(plan.base.get(spec.section) or {}, name)
    for key in given:
        node = plan.base
        for part in key.split("."):
            node = node[part]
        set_dotted(cfg, key, copy.deepcopy(node))
    for key, value in plan.method_sets.get(name, []):
        set_dotted(cfg, key, value)
    return cfg


def config_key(cfg: dict) -> str:
    """A fingerprint of a run's full config: a finished run is reused only when it matches."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- running


def run_one(plan: Plan, method: str, lr: float, seed: int, val_overrides: dict) -> dict:
    """Train one (method, lr, seed), score it on validation; write its metrics.json last."""
    cfg = plan.config(method, lr, seed)
    folder = plan.folder(method, lr, seed)
    mod = plan.spec.load()
    probe = StepProbe()
    start = time.perf_counter()
    test = mod.train(cfg, folder / "run", callbacks=[probe])
    val = mod.evaluate(folder / "run", copy.deepcopy(val_overrides))
    record = {
        "method": method,
        "lr": lr,
        "seed": seed,
        "config_key": config_key(cfg),
        "val": _pick(val, plan.metric, (), "validation"),
        "test": _pick(test, plan.metric, plan.extra, "test"),
        "trainable_parameters": probe.trainable,
        "step_ms": probe.median_ms(),
        "peak_memory_mb": probe.peak_mb,
        "memory_kind": probe.memory_kind,
        "steps": test.get("steps", test.get("train_steps")),
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(folder / "metrics.json", record)
    return record


def _pick(metrics: dict, metric: str, extra: tuple, where: str) -> dict:
    if not isinstance(metrics.get(metric), (int, float)):
        raise ValueError(f"the {where} metrics have no number {metric!r}; use --metric")
    return {k: metrics[k] for k in (metric, *extra) if isinstance(metrics.get(k), (int, float))}


def finished(plan: Plan, method: str, lr: float, seed: int) -> dict | None:
    """The record of a finished run with the same config, else None."""
    path = plan.folder(method, lr, seed) / "metrics.json"
    if not path.is_file():
        return None
    record = read_json(path, "run metrics")
    return record if record.get("config_key") == config_key(plan.config(method, lr, seed)) else None


def run_plan(plan: Plan, echo: Callable[[str], None] = print) -> list[dict]:
    """Every run of the plan (finished ones skipped), with progress and an ETA."""
    write_json(plan.out / "compare.json", _plan_json(plan))
    val_overrides = plan.spec.validation(plan.base, plan.out / "_data", dry=False)
    todo = plan.runs()
    records, failures, spent, done_here = [], plan.failures, 0.0, 0
    for i, (method, lr, seed) in enumerate(todo, 1):
        tag = f"[{i}/{len(todo)}] {method} lr={lr:g} seed={seed}"
        record = finished(plan, method, lr, seed)
        if record is not None:
            echo(f"{tag}: done before, skipped")
            records.append(record)
            continue
        echo(f"{tag}: training ...")
        t0 = time.perf_counter()
        try:
            record = run_one(plan, method, lr, seed, val_overrides)
        except Exception as e:  # one broken run must not end a long comparison
            why = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
            write_json(plan.folder(method, lr, seed) / "failed.json", {"error": why})
            echo(f"{tag}: FAILED ({why}); a re-run retries it")
            failures.append({"method": method, "lr": lr, "seed": seed, "error": why})
            continue
        spent, done_here = spent + time.perf_counter() - t0, done_here + 1
        eta = _clock(spent / done_here * sum(1 for r in todo[i:] if not finished(plan, *r)))
        echo(
            f"{tag}: val {record['val'][plan.metric]:.4f} test {record['test'][plan.metric]:.4f} "
            f"({record['seconds']:.0f} s, {record['step_ms']} ms/step); ETA {eta}"
        )
        records.append(record)
    return records


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def _plan_json(plan: Plan) -> dict:
    return {
        "pipeline": plan.pipeline,
        "methods": plan.methods,
        "lrs": plan.lrs,
        "seeds": plan.seeds,
        "metric": plan.metric,
        "higher_is_better": plan.higher_is_better,
        "base_config": plan.base,
        "method_configs": {m: c[plan.spec.section] for m, c in plan.configs.items()},
    }
