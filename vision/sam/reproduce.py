"""Recipe: FCL-COD-style weakly supervised COD with a real SAM checkpoint.

What it runs: SAM (vit_b / vit_l / vit_h, from a local checkpoint file) + FoRA (or LoRA)
trained on the standard COD training set with weak labels only (boxes, or S-COD
scribbles), box-prompted, then optionally rounds of teacher pseudo-labels and a distilled
prompt-free student; scored on CAMO, COD10K and NC4K with S-measure, E-measure, weighted F
and MAE (the same code as ``lorakit train cod``).

The layout (the one SINet-V2 and most COD code release; ``data_root``)::

    TrainDataset/Imgs/*.jpg          COD10K-train + CAMO-train (4,040 images)
    TrainDataset/boxes.json          {"<name>": [x0, y0, x1, y1]}      (labels: box)
    TrainDataset/Scribble/*.png      1 fg / 2 bg / 0 unknown (S-COD)   (labels: scribble)
    TestDataset/CAMO/Imgs, GT        and boxes.json for the box prompts
    TestDataset/COD10K/Imgs, GT      (boxes.json)
    TestDataset/NC4K/Imgs, GT        (boxes.json)
    checkpoints/sam_vit_b_01ec64.pth (or sam_vit_l_0b3195.pth / sam_vit_h_4b8939.pth,
                                      or ``checkpoint=`` any path)

Boxes are the bounding boxes of the ground-truth objects (how box supervision is built
from these datasets); ``boxes_from_gt(folder)`` writes a folder's ``boxes.json`` from its
``GT/``. ``scribble`` labels use points sampled from the scribble as prompts instead.

    check(root, backbone="vit_b")              # ValueError naming the first missing file
    run(root, "runs/fcl-cod", backbone="vit_b", steps=4000, devices=1, precision="bf16-mixed")

Options (``**opts``): backbone (vit_b | vit_l | vit_h | tiny), checkpoint, labels
(box | scribble), method (fora | lora), sets (test set names), steps, lr, batch_size, r,
rounds + round_steps (self-training), distill (bool) + distill_steps, devices, precision,
seed; ``tiny`` (a dict of tiny-SAM settings: the offline stand-in the tests use) and
``overrides`` (dotted pipeline keys, last word).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lorakit.data.cod import CODFolder, read_gray
from lorakit.data.runs import load_config

from . import pipeline

TEST_SETS = ("CAMO", "COD10K", "NC4K")
CHECKPOINTS = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
LABELS = ("box", "scribble")

SUMMARY = "FCL-COD-style weakly supervised COD: SAM vit_b/l/h + FoRA on CAMO, COD10K, NC4K"
# the keyword options of check() and run(): `lorakit reproduce ... --opt key=value`
OPTIONS = ("backbone", "checkpoint", "labels", "method", "sets", "steps", "lr", "batch_size", "r", "rounds", "round_steps", "distill", "distill_steps", "devices", "precision", "seed", "tiny", "overrides")

def _opt(opts: dict, key: str, default):
    return opts.get(key, default) if opts.get(key) is not None else default


def _checkpoint(root: Path, opts: dict) -> Path | None:
    backbone = _opt(opts, "backbone", "vit_b")
    if backbone == "tiny":
        return None
    if backbone not in CHECKPOINTS:
        raise ValueError(
            f"backbone must be one of {', '.join([*CHECKPOINTS, 'tiny'])}, got {backbone!r}"
        )
    return Path(_opt(opts, "checkpoint", root / "checkpoints" / CHECKPOINTS[backbone]))


def _first_missing(paths: list[Path]) -> Path | None:
    return next((p for p in paths if not p.exists()), None)


def check(data_root, **opts) -> None:
    """Raise ``ValueError`` naming the first missing file or folder (one line); else None."""
    root = Path(data_root)
    labels = _opt(opts, "labels", "box")
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")
    train = root / "TrainDataset"
    need = [root, train / "Imgs", train / ("boxes.json" if labels == "box" else "Scribble")]
    for name in _opt(opts, "sets", TEST_SETS):
        need += [root / "TestDataset" / name / sub for sub in ("Imgs", "GT")]
        if labels == "box":
            need.append(root / "TestDataset" / name / "boxes.json")
    ckpt = _checkpoint(root, opts)
    if ckpt is not None:
        need.append(ckpt)
    missing = _first_missing(need)
    if missing is not None:
        hint = (
            " (write it with lorakit.vision.sam.reproduce.boxes_from_gt)"
            if missing.name == "boxes.json"
            else ""
        )
        raise ValueError(f"COD recipe: {missing} is missing{hint}")
    weak = ("box",) if labels == "box" else ("scribble",)
    CODFolder(train, need_gt=False, weak=weak)  # every image has its label (names the file)
    for name in _opt(opts, "sets", TEST_SETS):
        CODFolder(root / "TestDataset" / name, need_gt=True, weak=weak if labels == "box" else ())


def boxes_from_gt(folder) -> Path:
    """Write ``folder/boxes.json`` from ``folder/GT/*.png`` (the object's bounding box)."""
    folder = Path(folder)
    gt_dir = folder / "GT"
    if not gt_dir.is_dir():
        raise ValueError(f"{gt_dir} is missing: boxes come from the ground-truth masks")
    boxes = {}
    for p in sorted(gt_dir.glob("*.png")):
        ys, xs = np.nonzero(read_gray(p) > 127)
        if len(ys):
            boxes[p.stem] = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    out = folder / "boxes.json"
    tmp = out.with_name(".boxes.json.tmp")
    tmp.write_text(json.dumps(boxes))
    tmp.replace(out)
    return out


def config(data_root, **opts) -> dict:
    """The ``lorakit train cod`` config the recipe runs (paper-scale defaults)."""
    root = Path(data_root)
    labels = _opt(opts, "labels", "box")
    backbone = _opt(opts, "backbone", "vit_b")
    sets = [
        "adapter.method=" + _opt(opts, "method", "fora"),
        f"adapter.r={_opt(opts, 'r', 4)}",
        f"prompts.labels={labels}",
        "prompts.mode=" + ("box" if labels == "box" else "points"),
        f"optim.lr={_opt(opts, 'lr', 1e-4)}",
        f"optim.batch_size={_opt(opts, 'batch_size', 4)}",
        f"trainer.max_steps={_opt(opts, 'steps', 4000)}",
        f"trainer.devices={_opt(opts, 'devices', 1)}",
        f"trainer.precision={_opt(opts, 'precision', '32-true')}",
        f"trainer.seed={_opt(opts, 'seed', 0)}",
        f"trainer.checkpoint_every={_opt(opts, 'checkpoint_every', 500)}",
        f"selftrain.rounds={_opt(opts, 'rounds', 2)}",
        f"selftrain.steps={_opt(opts, 'round_steps', 1000)}",
        f"distill.enabled={str(bool(_opt(opts, 'distill', True))).lower()}",
        f"distill.steps={_opt(opts, 'distill_steps', 4000)}",
        "distill.size=352",
        "eval.zero_shot=true",
        "eval.progress=false",
        "trainer.progress=false",
    ]
    cfg = load_config(None, sets, pipeline.DEFAULTS)
    cfg["data"]["train"] = str(root / "TrainDataset")
    cfg["data"]["test"] = {n: str(root / "TestDataset" / n) for n in _opt(opts, "sets", TEST_SETS)}
    cfg["data"]["cache"] = str(Path(_opt(opts, "cache", root / ".lorakit-cache")))
    if backbone == "tiny":
        cfg["backbone"] = {**cfg["backbone"], "name": "tiny", **_opt(opts, "tiny", {})}
    else:
        cfg["backbone"] = {
            **cfg["backbone"],
            "name": backbone,
            "checkpoint": str(_checkpoint(root, opts)),
        }
    for key, value in _opt(opts, "overrides", {}).items():
        section, _, field = key.partition(".")
        cfg.setdefault(section, {})[field] = value
    return cfg


def run(data_root, out, **opts) -> dict:
    """Check the inputs, then train and evaluate; returns the run's metrics dict."""
    check(data_root, **opts)
    return pipeline.train(config(data_root, **opts), Path(out))
