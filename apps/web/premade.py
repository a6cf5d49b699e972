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

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

log = logging.getLogger("lorakit.apps.web.premade")

SHIPPED = Path(__file__).with_name("premade_runs")
MANIFEST = "manifest.json"
BACKBONES = "_backbones"
TOKEN = "@RUNS@"  # the runs root in shipped files
SKIP = ("checkpoints", "logs")  # resumable state and training logs: not needed to show a run
NON_TENSOR = "lorakit_non_tensor"  # safetensors metadata key: a checkpoint's other fields


# --------------------------------------------------------------------------- paths


def _swap(value, old: str, new: str):
    """``value`` with ``old`` replaced by ``new`` in every string it holds (dicts, lists)."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    return value


def portable(value, root: Path):
    """The runs root in ``value``'s strings written as ``@RUNS@``."""
    return _swap(value, str(Path(root)), TOKEN)


def localised(value, root: Path):
    """``@RUNS@`` in ``value``'s strings replaced by this machine's runs root."""
    return _swap(value, TOKEN, str(Path(root)))


def portable_fingerprint(cfg: dict, root: Path) -> str:
    """The fingerprint of a resolved config wherever its runs root is."""
    from lorakit.apps.web.prebuilt import fingerprint

    return fingerprint(portable(cfg, root))


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rewrite(path: Path, convert) -> None:
    """Apply ``convert`` to the strings of a JSON or YAML file (other files: unchanged)."""
    if path.suffix == ".json":
        path.write_text(json.dumps(convert(json.loads(path.read_text())), indent=2) + "\n")
    elif path.suffix in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump(convert(yaml.safe_load(path.read_text())), sort_keys=False))


def run_files(folder: Path) -> list[str]:
    """The files of a run folder that are shipped (relative, sorted)."""
    folder = Path(folder)
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).parts[0] not in SKIP
    )


# --------------------------------------------------------------------------- backbones


def backbone_files(spec, cfg: dict, root: Path) -> list[str]:
    """Checkpoints outside the run folder that the run's model is built from (relative to
    ``root``): pretrained on first use by the pipeline, so shipped beside the run."""
    paths = []
    if spec.pipeline == "ood" and cfg["backbone"].get("checkpoint"):
        paths.append(Path(cfg["backbone"]["checkpoint"]))
    if spec.pipeline == "cod":
        from lorakit.vision.sam.pipeline import backbone_config
        from lorakit.vision.sam.pretrain import checkpoint_name

        bb = backbone_config(cfg)
        if bb.pretrain_steps > 0:
            paths.append(Path(bb.cache) / checkpoint_name(bb))
    root = Path(root).resolve()
    out = []
    for p in paths:
        try:
            out.append(p.resolve().relative_to(root).as_posix())
        except ValueError:  # a checkpoint outside the runs root is the user's: not shipped
            continue
    return out


def _flatten(obj, prefix: str, tensors: dict, other: dict) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().clone().contiguous()  # clone: no shared storage
    elif isinstance(obj, dict) and obj and all(isinstance(k, str) for k in obj):
        for k, v in obj.items():
            _flatten(v, f"{prefix}/{k}" if prefix else k, tensors, other)
    else:
        other[prefix] = obj


def checkpoint_to_safetensors(src: Path, dst: Path, convert=lambda v: v) -> None:
    """A torch checkpoint (a dict of tensors, nested dicts and JSON values) as safetensors:
    tensors under ``a/b`` keys, the rest as JSON in the metadata (through ``convert``)."""
    import torch
    from safetensors.torch import save_file

    state = torch.load(src, map_location="cpu", weights_only=True)
    tensors, other = {}, {}
    _flatten(state, "", tensors, other)
    dst.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(convert(other), sort_keys=True)
    save_file(tensors, str(dst), metadata={NON_TENSOR: meta})


def safetensors_to_state(src: Path, convert=lambda v: v) -> dict:
    """The checkpoint dict ``checkpoint_to_safetensors`` wrote (its non-tensor values
    through ``convert``)."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        flat = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items
        other = convert(json.loads((f.metadata() or {}).get(NON_TENSOR, "{}")))
    state: dict = {}
    for key, value in [*flat.items(), *other.items()]:
        *parents, leaf = key.split("/")
        node = state
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return state


def _same_state(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    return a == b


def install_backbone(src: Path, dst: Path, root: Path | None = None) -> bool:
    """Write the checkpoint ``dst`` from the shipped ``src`` (its paths under the runs
    ``root``) unless ``dst`` already holds the same; returns whether it was written
    (atomically, tensors only)."""
    import torch

    state = safetensors_to_state(src, lambda v: v if root is None else localised(v, root))
    if dst.is_file():
        try:
            if _same_state(torch.load(dst, map_location="cpu", weights_only=True), state):
                return False
        except Exception:  # noqa: BLE001 - an unreadable checkpoint is replaced
            pass
        log.warning("replacing the backbone %s with the shipped one", dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, dst)
    return True


# --------------------------------------------------------------------------- install


def read_manifest(shipped: Path = SHIPPED) -> dict:
    f = Path(shipped) / MANIFEST
    return json.loads(f.read_text()) if f.is_file() else {"runs": {}}


def shipped_entry(spec, cfg: dict, root: Path, shipped: Path = SHIPPED) -> dict | None:
    """The manifest entry of the shipped run for ``spec``, if it was built from the same config."""
    entry = read_manifest(shipped)["runs"].get(spec.key)
    if entry is None or entry["fingerprint"] != portable_fingerprint(cfg, root):
        return None
    return entry


def install(spec, cfg: dict, root: Path, shipped: Path = SHIPPED) -> bool:
    """Copy the shipped run of ``spec`` into ``root/spec.key`` (and its backbones), when one
    was built from the same config; returns whether it did. The folder appears whole or not
    at all (built aside, then renamed)."""
    from lorakit.apps.web.prebuilt import MARKER, fingerprint

    root, shipped = Path(root), Path(shipped)
    entry = shipped_entry(spec, cfg, root, shipped)
    if entry is None:
        return False
    src = shipped / spec.key
    for rel, digest in entry["files"].items():  # a damaged package is trained, not trusted
        if not (src / rel).is_file() or sha256(src / rel) != digest:
            log.warning("shipped run %s: %s is missing or changed; training it", spec.key, rel)
            return False
    for rel in entry.get("backbones", []):
        install_backbone(shipped / BACKBONES / f"{rel}.safetensors", root / rel, root)
    folder = root / spec.key
    tmp = root / f".{spec.key}.{os.getpid()}.installing"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in entry["files"]:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, tmp / rel)
        _rewrite(tmp / rel, lambda v: localised(v, root))
    marker = json.loads((tmp / MARKER).read_text())
    marker.update(fingerprint=fingerprint(cfg), source="shipped", path=str(folder))
    (tmp / MARKER).write_text(json.dumps(marker, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return True


# --------------------------------------------------------------------------- export


def export(spec, cfg: dict, root: Path, dest: Path = SHIPPED) -> dict:
    """Copy the built run ``root/spec.key`` into ``dest`` (paths made portable, backbones as
    safetensors); returns its manifest entry."""
    from lorakit.apps.web.prebuilt import MARKER

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
