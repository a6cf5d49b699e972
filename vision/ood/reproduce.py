"""Recipe: LARGO (or LoRA, full fine-tuning, linear probe) fine-tuned on ImageNet and
evaluated under natural distribution shift, or on DomainNet's real domain and evaluated
on the other domains, with a real checkpoint.

What it runs: ``lorakit train ood`` on a backbone from a local file (default torchvision
``vit_b_16``, ImageNet head kept; or an open_clip model with a zero-shot head), the ID
accuracy on ImageNet val, the accuracy on each shifted set (subset sets such as
ImageNet-R/-A are scored over their 200 classes only), the WiSE-FT curve and effective
robustness.

ImageNet layout (``data_root``; class folders are WordNet ids, as the official releases)::

    imagenet/train/<wnid>/*.JPEG     ID training set (1,000 classes)
    imagenet/val/<wnid>/*.JPEG       ID test set
    imagenet-v2/<0..999 or wnid>/    ImageNetV2 matched-frequency (index folders are mapped
                                     to the sorted wnids, as the release numbers them)
    imagenet-sketch/sketch/<wnid>/   ImageNet-Sketch
    imagenet-r/<wnid>/               ImageNet-R (200 classes)
    imagenet-a/<wnid>/               ImageNet-A (200 classes)
    checkpoints/vit_b_16-c867db91.pth  torchvision weights (or ``checkpoint=`` any path)

DomainNet layout (``dataset="domainnet"``: ID = ``real``, OOD = the other domains' test
splits; the official split lists pick the images, linked into ``out/splits``)::

    domainnet/<domain>/<class>/*.jpg  for real, clipart, infograph, painting, quickdraw, sketch
    domainnet/<domain>_train.txt, <domain>_test.txt   "<domain>/<class>/<file> <label>" lines

    check(root)                                   # ValueError naming the first missing file
    run(root, "runs/largo-imagenet", steps=10000, devices=8, precision="bf16-mixed")

Options (``**opts``): dataset (imagenet | domainnet), sets (names from ``IMAGENET_SETS`` or
domains), method, r, lr, batch_size, steps, gamma_rel, mu, seed, devices, precision,
kind (torchvision | open_clip | tiny_vit), arch, model, checkpoint; ``tiny`` (a dict of
tiny_vit settings: the offline stand-in the tests use) and ``overrides`` (dotted keys).
"""

from __future__ import annotations

import os
from pathlib import Path

from lorakit.data.runs import load_config

from . import pipeline

IMAGENET_SETS = {
    "imagenet-v2": "imagenet-v2",
    "imagenet-sketch": "imagenet-sketch/sketch",
    "imagenet-r": "imagenet-r",
    "imagenet-a": "imagenet-a",
}
DOMAINS = ("real", "clipart", "infograph", "painting", "quickdraw", "sketch")
CHECKPOINTS = {"vit_b_16": "vit_b_16-c867db91.pth", "resnet50": "resnet50-11ad3fa6.pth"}

SUMMARY = "LARGO vs LoRA under natural shift: ImageNet -> V2/Sketch/R/A, or DomainNet domains"
# the keyword options of check() and run(): `lorakit reproduce ... --opt key=value`
OPTIONS = ("dataset", "sets", "method", "r", "lr", "batch_size", "steps", "gamma_rel", "mu", "seed", "devices", "precision", "kind", "arch", "model", "checkpoint", "tiny", "overrides")

def _opt(opts: dict, key: str, default):
    return opts[key] if opts.get(key) is not None else default


def _checkpoint(root: Path, opts: dict) -> Path | None:
    kind = _opt(opts, "kind", "torchvision")
    if kind == "tiny_vit" or (kind == "open_clip" and not opts.get("checkpoint")):
        return None
    arch = _opt(opts, "arch", "vit_b_16")
    default = root / "checkpoints" / CHECKPOINTS.get(arch, f"{arch}.pth")
    return Path(_opt(opts, "checkpoint", default))


def _needed(root: Path, opts: dict) -> list[Path]:
    dataset = _opt(opts, "dataset", "imagenet")
    if dataset == "imagenet":
        need = [root, root / "imagenet" / "train", root / "imagenet" / "val"]
        for name in _opt(opts, "sets", list(IMAGENET_SETS)):
            if name not in IMAGENET_SETS:
                raise ValueError(
                    f"unknown ImageNet OOD set {name!r}; valid: {', '.join(IMAGENET_SETS)}"
                )
            need.append(root / IMAGENET_SETS[name])
    elif dataset == "domainnet":
        dn = root / "domainnet"
        need = [root, dn / "real", dn / "real_train.txt", dn / "real_test.txt"]
        for d in _opt(opts, "sets", [d for d in DOMAINS if d != "real"]):
            if d not in DOMAINS or d == "real":
                raise ValueError(
                    f"unknown DomainNet OOD domain {d!r}; valid: {', '.join(DOMAINS[1:])}"
                )
            need += [dn / d, dn / f"{d}_test.txt"]
    else:
        raise ValueError(f"dataset must be imagenet or domainnet, got {dataset!r}")
    ckpt = _checkpoint(root, opts)
    return need + ([ckpt] if ckpt is not None else [])


def check(data_root, **opts) -> None:
    """Raise ``ValueError`` naming the first missing file or folder (one line); else None."""
    root = Path(data_root)
    for path in _needed(root, opts):
        if not path.exists():
            raise ValueError(f"OOD recipe: {path} is missing")
    if _opt(opts, "dataset", "imagenet") == "domainnet":
        for lst in [p for p in _needed(root, opts) if p.suffix == ".txt"]:
            _read_list(lst)  # names the first listed image that is absent


def _read_list(path: Path) -> list[tuple[str, str]]:
    """(relative image path, class folder) per line of a DomainNet split list."""
    out = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        rel = line.split()[0]
        parts = Path(rel).parts
        if len(parts) < 3:
            raise ValueError(
                f"{path}:{k}: expected '<domain>/<class>/<file> <label>', got {line!r}"
            )
        if not (path.parent / rel).is_file():
            raise ValueError(
                f"OOD recipe: {path.parent / rel} (listed in {path.name}:{k}) is missing"
            )
        out.append((rel, parts[1]))
    return out


def _materialise(lst: Path, dest: Path) -> str:
    """Symlink a split list's images into ``dest/<class>/`` (an ImageFolder tree)."""
    for rel, cls in _read_list(lst):
        link = dest / cls / Path(rel).name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink((lst.parent / rel).resolve(), link)
    return str(dest)


def _v2_class_map(folder: Path, classes: list[str]) -> dict | str:
    names = [p.name for p in folder.iterdir() if p.is_dir()]
    if names and all(n.isdigit() for n in names):
        return {n: classes[int(n)] for n in names if int(n) < len(classes)}
    return "auto"


def data_section(root: Path, out: Path, opts: dict) -> dict:
    """The ``data:`` section (``kind: folders``) for the chosen dataset."""
    if _opt(opts, "dataset", "imagenet") == "domainnet":
        dn, splits = root / "domainnet", out / "splits"
        id_train = _materialise(dn / "real_train.txt", splits / "real_train")
        id_test = _materialise(dn / "real_test.txt", splits / "real_test")
        ood = [
            {"name": d, "root": _materialise(dn / f"{d}_test.txt", splits / f"{d}_test")}
            for d in _opt(opts, "sets", [d for d in DOMAINS if d != "real"])
        ]
        classes = sorted(p.name for p in Path(id_train).iterdir() if p.is_dir())
        return {
            "kind": "folders",
            "id_train": id_train,
            "id_test": id_test,
            "ood": ood,
            "classes": classes,
        }
    train = root / "imagenet" / "train"
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    ood = []
    for name in _opt(opts, "sets", list(IMAGENET_SETS)):
        folder = root / IMAGENET_SETS[name]
        cmap = _v2_class_map(folder, classes) if name == "imagenet-v2" else "auto"
        ood.append({"name": name, "root": str(folder), "class_map": cmap})
    return {
        "kind": "folders",
        "id_train": str(train),
        "id_test": str(root / "imagenet" / "val"),
        "ood": ood,
        "classes": classes,
    }


def config(data_root, out, **opts) -> dict:
    """The ``lorakit train ood`` config the recipe runs (paper-scale defaults)."""
    root, out = Path(data_root), Path(out)
    method = _opt(opts, "method", "largo")
    cfg = load_config(None, [], pipeline.DEFAULTS)
    cfg["data"] = data_section(root, out, opts)
    kind = _opt(opts, "kind", "torchvision")
    ckpt = _checkpoint(root, opts)
    backbone = {"kind": kind, "arch": _opt(opts, "arch", "vit_b_16"), "image_size": 224}
    backbone["checkpoint"] = str(ckpt) if ckpt is not None else None
    if kind == "open_clip":
        backbone.update(model=_opt(opts, "model", "ViT-B-16"), pretrained=opts.get("pretrained"))
    if kind == "tiny_vit":
        backbone.update(_opt(opts, "tiny", {}))
    cfg["backbone"] = {**cfg["backbone"], **backbone}
    hyper = {"gamma_rel": _opt(opts, "gamma_rel", 0.01), "mu": _opt(opts, "mu", 0.01)}
    cfg["adapter"] = {
        **cfg["adapter"],
        "method": method,
        "r": _opt(opts, "r", 8),
        "alpha": float(_opt(opts, "r", 8)),
        "hyper": hyper if method == "largo" else {},
    }
    cfg["optim"] = {
        **cfg["optim"],
        "lr": _opt(opts, "lr", 1e-4),
        "batch_size": _opt(opts, "batch_size", 128),
    }
    cfg["eval"] = {**cfg["eval"], "corruptions": [], "wise_alphas": [0.0, 0.5, 1.0]}
    cfg["trainer"] = {
        **cfg["trainer"],
        "max_steps": _opt(opts, "steps", 10_000),
        "seed": _opt(opts, "seed", 0),
        "devices": _opt(opts, "devices", 1),
        "precision": _opt(opts, "precision", "32-true"),
        "checkpoint_every": _opt(opts, "checkpoint_every", 1000),
        "progress": False,
    }
    for key, value in _opt(opts, "overrides", {}).items():
        section, _, field = key.partition(".")
        cfg.setdefault(section, {})[field] = value
    return cfg


def run(data_root, out, **opts) -> dict:
    """Check the inputs, then fine-tune and evaluate; returns the run's metrics dict."""
    check(data_root, **opts)
    return pipeline.train(config(data_root, out, **opts), Path(out))
