"""Installing the pre-made demo runs shipped in ``premade_runs/`` (what the hub does on
start, instead of training): file copies with the runs root filled in, the stand-in
backbones written back from safetensors, every file checked against ``manifest.json``.
``premade`` makes and checks the shipped copies; ``prebuilt`` decides when to install."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import yaml

log = logging.getLogger("lorakit.apps.web.premade")

SHIPPED = Path(__file__).with_name("premade_runs")
MANIFEST = "manifest.json"
BACKBONES = "_backbones"
TOKEN = "@RUNS@"  # the runs root in shipped files
SKIP = ("checkpoints", "logs")  # resumable state and training logs: not needed to show a run
NON_TENSOR = "lorakit_non_tensor"  # safetensors metadata key: a checkpoint's other fields
MARKER = "prebuilt.json"  # written last into a built run folder: its config's fingerprint


def fingerprint(cfg: dict) -> str:
    """A resolved config's hash; keys added after runs were shipped count only when they
    leave the default those runs had (``without_added_defaults``), so a new optional field
    does not turn every shipped or installed run stale (and retrain it on start)."""
    plain = without_added_defaults(json.loads(json.dumps(cfg, default=str)))
    return hashlib.sha1(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def without_added_defaults(cfg: dict, prefix: str = "") -> dict:
    """``cfg`` without the leaves named in ``data.runs.ADDED_LATER`` that hold its default."""
    from lorakit.data.runs import ADDED_LATER

    out = {}
    for k, v in cfg.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out[k] = without_added_defaults(v, key)
        elif not (key in ADDED_LATER and v == ADDED_LATER[key]):
            out[k] = v
    return out


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


