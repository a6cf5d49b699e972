"""The pre-made demo runs shipped inside the package, and the one command that makes them.

    python -m lorakit.apps.web.premade build          # retrain every demo run into premade_runs/
    python -m lorakit.apps.web.premade build cod-fora # only that one (the others are kept)
    python -m lorakit.apps.web.premade check          # retrain into a temp folder, compare

``premade_runs/`` holds, per run of the ``demo`` profile, the small files of its run folder
(``adapter/``, ``config.yaml``, ``metrics.json``, plots, the ``prebuilt.json`` marker and
data generated inside the folder; never ``checkpoints/``), plus ``_backbones/``: the
stand-in backbones the runs were trained on (the OOD tiny ViT, the camouflage tiny SAM),
as safetensors. ``manifest.json`` records each run's portable fingerprint (its resolved
config with the runs root written ``@RUNS@``), the sha256 of every file and the seconds each
build phase took (the ETA of the next rebuild).

On start the hub ``install``s a shipped run into its runs root (file copies with the root
path filled in, the backbone checkpoint written where the config expects it) instead of
training it; it trains only when no run is shipped under that key or the fingerprints differ.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from lorakit.apps.web.shipped import (  # noqa: F401 - the installer's names, read here too
    BACKBONES,
    MANIFEST,
    MARKER,
    NON_TENSOR,
    SHIPPED,
    SKIP,
    TOKEN,
    _flatten,
    _rewrite,
    _same_state,
    _swap,
    backbone_files,
    checkpoint_to_safetensors,
    fingerprint,
    install,
    install_backbone,
    localised,
    portable,
    portable_fingerprint,
    read_manifest,
    run_files,
    safetensors_to_state,
    sha256,
    shipped_entry,
)

log = logging.getLogger("lorakit.apps.web.premade")


def export(spec, cfg: dict, root: Path, dest: Path = SHIPPED) -> dict:
    """Copy the built run ``root/spec.key`` into ``dest`` (paths made portable, backbones as
    safetensors); returns its manifest entry."""

    root, dest = Path(root), Path(dest)
    folder, out = root / spec.key, dest / spec.key
    if out.exists():
        shutil.rmtree(out)
    files = {}
    for rel in run_files(folder):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, out / rel)
        _rewrite(out / rel, lambda v: portable(v, root))
        files[rel] = sha256(out / rel)
    backbones = backbone_files(spec, cfg, root)
    for rel in backbones:
        checkpoint_to_safetensors(
            root / rel, dest / BACKBONES / f"{rel}.safetensors", lambda v: portable(v, root)
        )
    marker = json.loads((folder / MARKER).read_text())
    return {
        "fingerprint": portable_fingerprint(cfg, root),
        "files": files,
        "backbones": backbones,
        "phases": marker.get("phases", {}),
        "bytes": sum((out / r).stat().st_size for r in files),
    }


def write_manifest(entries: dict, dest: Path = SHIPPED) -> None:
    manifest = read_manifest(dest)
    manifest["runs"].update(entries)
    manifest["runs"] = dict(sorted(manifest["runs"].items()))
    (Path(dest) / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


# --------------------------------------------------------------------------- compare

TOLERANCE = 0.02  # metrics of a rebuild vs the shipped run, where the build is not bit-exact
TIMING = ("seconds", "_ms", "_mb", "_s", "time", "per_step")  # keys that measure the machine


def _numbers(value, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a metrics dict, by dotted path (timings left out)."""
    if isinstance(value, dict):
        return {
            k: v
            for key, sub in value.items()
            if not str(key).endswith(TIMING) and "seconds" not in str(key)
            for k, v in _numbers(sub, f"{prefix}{key}.").items()
        }
    if isinstance(value, list):
        return {
            k: v for i, sub in enumerate(value) for k, v in _numbers(sub, f"{prefix}{i}.").items()
        }
    if isinstance(value, bool) or not isinstance(value, int | float):
        return {}
    return {prefix.rstrip("."): float(value)}


def compare(shipped: Path, rebuilt: Path, key: str, tol: float = TOLERANCE) -> dict:
    """How the rebuilt run ``key`` (an export in ``rebuilt``) differs from the shipped one:
    ``identical`` files (same sha256), ``differ`` (files other than metrics, plots and the
    marker's timings that are not identical), ``metrics_off`` ({metric: (shipped, rebuilt)}
    further apart than ``tol``), ``missing`` / ``extra`` files. Plots are drawn from the
    metrics, so they are only counted."""
    a, b = read_manifest(shipped)["runs"][key], read_manifest(rebuilt)["runs"][key]
    out = {"identical": [], "differ": [], "metrics_off": {}, "fingerprint": a["fingerprint"]}
    out["missing"] = sorted(set(a["files"]) - set(b["files"]))
    out["extra"] = sorted(set(b["files"]) - set(a["files"]))
    out["same_fingerprint"] = a["fingerprint"] == b["fingerprint"]
    for rel in sorted(set(a["files"]) & set(b["files"])):
        if a["files"][rel] == b["files"][rel]:
            out["identical"].append(rel)
        elif not rel.endswith((".png", "metrics.json", "prebuilt.json")):
            out["differ"].append(rel)
    ma = _numbers(json.loads((Path(shipped) / key / "metrics.json").read_text()))
    mb = _numbers(json.loads((Path(rebuilt) / key / "metrics.json").read_text()))
    for name in sorted(set(ma) | set(mb)):
        va, vb = ma.get(name), mb.get(name)
        if va is None or vb is None or abs(va - vb) > tol * max(1.0, abs(va)):
            out["metrics_off"][name] = (va, vb)
    return out


def check(keys: list[str] | None = None, echo=print) -> bool:
    """Rebuild ``keys`` into a temp folder and compare each with the shipped run."""
    dest = Path(tempfile.mkdtemp(prefix="lorakit-premade-check-"))
    ok = True
    for key in build(keys, dest, echo=echo):
        d = compare(SHIPPED, dest, key)
        same = d["same_fingerprint"] and not (d["differ"] or d["metrics_off"] or d["missing"])
        ok &= same
        echo(
            f"{key}: {'matches' if same else 'DIFFERS'}: {len(d['identical'])} files identical, "
            f"differ {d['differ']}, metrics off by more than {TOLERANCE:.0%} {d['metrics_off']}"
        )
    return ok


# --------------------------------------------------------------------------- the command


def _ticker(status, stop: threading.Event, every: float, echo) -> None:
    """Every ``every`` seconds, one line per run being built (its phase, progress and ETA)."""
    while not stop.wait(every):
        for key, row in status.snapshot().items():
            if row.get("state") == "building":
                echo(f"  {key}: {row.get('message', '')}")


def build(
    keys: list[str] | None = None,
    dest: Path = SHIPPED,
    work: Path | None = None,
    echo=print,
    every: float = 30.0,
) -> dict:
    """Retrain the ``demo`` profile's runs (``keys``: only these) in ``work`` (a temp folder
    by default) and export them into ``dest``; returns the manifest entries written."""
    from lorakit.apps.web.prebuilt import BuildStatus, build_one, profile, resolve

    work = Path(work or tempfile.mkdtemp(prefix="lorakit-premade-"))
    specs = [s for s in profile("demo", work) if keys is None or s.key in keys]
    unknown = set(keys or ()) - {s.key for s in specs}
    if unknown:
        raise ValueError(f"unknown pre-made run(s) {sorted(unknown)}")
    Path(dest).mkdir(parents=True, exist_ok=True)
    status, entries = BuildStatus(), {}
    stop = threading.Event()
    threading.Thread(target=_ticker, args=(status, stop, every, echo), daemon=True).start()
    try:
        for i, spec in enumerate(specs):
            echo(f"[{i + 1}/{len(specs)}] {spec.key}: building in {work}")
            t0 = time.perf_counter()
            build_one(spec, work, status, rebuild=True, shipped=SHIPPED)  # its ETAs
            if status.get(spec.key)["state"] != "ready":
                raise RuntimeError(f"{spec.key}: {status.get(spec.key).get('message')}")
            entries[spec.key] = export(spec, resolve(spec), work, dest)
            write_manifest({spec.key: entries[spec.key]}, dest)  # commit each run as it lands
            echo(
                f"[{i + 1}/{len(specs)}] {spec.key}: built in {time.perf_counter() - t0:.0f} s, "
                f"{entries[spec.key]['bytes'] / 1024:.0f} KiB shipped"
            )
    finally:
        stop.set()
    return entries


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lorakit.apps.web.premade")
    parser.add_argument(
        "command",
        choices=("build", "check"),
        help="build: retrain and export; check: retrain aside and compare with the shipped runs",
    )
    parser.add_argument("keys", nargs="*", help="run keys (default: all of the demo profile)")
    parser.add_argument("--dest", type=Path, default=SHIPPED, help="shipped runs folder")
    parser.add_argument("--work", type=Path, default=None, help="where to train (temp)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        if args.command == "check":
            return 0 if check(args.keys or None) else 1
        build(args.keys or None, args.dest, args.work)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
