"""``lorakit reproduce clip-lora``: the CLIP-LoRA recipe (Zanella & Ben Ayed, 2024) on the
11 few-shot datasets in CoOp's layout.

    lorakit reproduce clip-lora --data-root /data/coop --checkpoint /models/ViT-B-16.pt

Recipe: ViT-B/16, LoRA r=2 (alpha 1, dropout 0.25) on q, k, v of every layer of both
encoders, AdamW lr 2e-4, batch 32, cosine schedule, 500 x shots iterations, the dataset's
CoOp prompt template; shots 1/2/4/8/16, seeds 1/2/3; top-1 test accuracy. Data: CoOp's
folders under ``--data-root`` (``oxford_pets/images`` + ``oxford_pets/split_zhou_OxfordPets.json``,
...; ``fgvc_aircraft`` with its ``images_variant_*.txt``; ``imagenet/images/{train,val}`` with
``imagenet/classnames.txt``). Every input is checked before any training: the first missing
file is named in one line. Finished runs (``metrics.json``) are kept, so a rerun resumes.
Results: ``<out>/results.md`` and ``results.json`` (mean and 95 % interval over seeds).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from lorakit.data import fewshot
from lorakit.data.intervals import mean_ci
from lorakit.data.runs import load_config, read_json, write_json

SUMMARY = "CLIP-LoRA few-shot recipe on CoOp's 11 datasets (ViT-B/16)"


@dataclass(frozen=True)
class Dataset:
    folder: str
    images: str  # image root, relative to the folder
    split: str  # split_zhou_*.json, "aircraft" (txt files) or "imagenet" (folders)
    template: str


DATASETS: dict[str, Dataset] = {
    "imagenet": Dataset("imagenet", "images", "imagenet", "a photo of a {}."),
    "caltech101": Dataset("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                          "a photo of a {}."),
    "oxford_pets": Dataset("oxford_pets", "images", "split_zhou_OxfordPets.json",
                           "a photo of a {}, a type of pet."),
    "stanford_cars": Dataset("stanford_cars", "", "split_zhou_StanfordCars.json",
                             "a photo of a {}."),
    "oxford_flowers": Dataset("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                              "a photo of a {}, a type of flower."),
    "food101": Dataset("food-101", "images", "split_zhou_Food101.json",
                       "a photo of {}, a type of food."),
    "fgvc_aircraft": Dataset("fgvc_aircraft", "images", "aircraft",
                             "a photo of a {}, a type of aircraft."),
    "sun397": Dataset("sun397", "SUN397", "split_zhou_SUN397.json", "a photo of a {}."),
    "dtd": Dataset("dtd", "images", "split_zhou_DescribableTextures.json", "{} texture."),
    "eurosat": Dataset("eurosat", "2750", "split_zhou_EuroSAT.json",
                       "a centered satellite photo of {}."),
    "ucf101": Dataset("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
                      "a photo of a person doing {}."),
}


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise ValueError(f"missing {what}: {path}")
    return path


def _aircraft(folder: Path, images: Path) -> dict[str, fewshot.Split]:
    names = [ln.strip() for ln in _need(folder / "variants.txt", "file").read_text().splitlines()
             if ln.strip()]
    label = {n: i for i, n in enumerate(names)}
    out = {}
    for part in ("train", "val", "test"):
        items = []
        for ln in _need(folder / f"images_variant_{part}.txt", "file").read_text().splitlines():
            if ln.strip():
                image, variant = ln.strip().split(" ", 1)
                if variant not in label:
                    raise ValueError(f"{folder}/images_variant_{part}.txt: unknown variant {variant!r}")
                items.append((images / f"{image}.jpg", label[variant]))
        out[part] = fewshot.Split(items, names)
    return out


def _imagenet(folder: Path, images: Path) -> dict[str, fewshot.Split]:
    rows = [ln.strip().split(" ", 1) for ln in
            _need(folder / "classnames.txt", "file").read_text().splitlines() if ln.strip()]
    wnids, names = [r[0] for r in rows], [r[1] if len(r) > 1 else r[0] for r in rows]
    out = {}
    for part, sub in (("train", "train"), ("test", "val")):
        items = []
        for label, wnid in enumerate(wnids):
            d = _need(images / sub / wnid, "class folder")
            items += [(p, label) for p in sorted(d.iterdir())
                      if p.suffix.lower() in fewshot.IMAGE_SUFFIXES]
        out[part] = fewshot.Split(items, names)
    out["val"] = fewshot.Split([], names)
    return out


def read_dataset(root: Path, name: str) -> dict[str, fewshot.Split]:
    """The dataset's train/val/test splits; raises ``ValueError`` naming the first missing file."""
    d = DATASETS[name]
    folder = _need(root / d.folder, f"dataset folder ({name})")
    images = _need(folder / d.images, f"image folder ({name})") if d.images else folder
    if d.split == "aircraft":
        splits = _aircraft(folder, images)
    elif d.split == "imagenet":
        splits = _imagenet(folder, images)
    else:
        splits = fewshot.read_coop_split(_need(folder / d.split, "split file"), images)
    for part in ("train", "test"):
        if not splits[part].items:
            raise ValueError(f"{name}: the {part} split is empty")
        for path, _ in splits[part].items:
            if not Path(path).is_file():
                raise ValueError(f"missing image ({name}, {part}): {path}")
    return splits


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # a one-line ValueError instead of usage + exit
        raise ValueError(f"lorakit reproduce clip-lora: {message}")


def parse(argv: list[str]) -> argparse.Namespace:
    ap = _Parser(prog="lorakit reproduce clip-lora", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, required=True, help="CoOp's DATA folder")
    ap.add_argument("--out", type=Path, default=Path("runs/reproduce-clip-lora"))
    ap.add_argument("--datasets", default="all", help="comma list of " + ", ".join(DATASETS))
    ap.add_argument("--shots", default="1,2,4,8,16")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--model", default="ViT-B-16", help="open_clip architecture")
    ap.add_argument("--checkpoint", type=Path, help="local CLIP weights (.pt/.bin/.safetensors)")
    ap.add_argument("--pretrained", help="instead of --checkpoint: an open_clip tag in the cache")
    ap.add_argument("--steps-per-shot", type=int, default=500)
    ap.add_argument("--accelerator", default="auto")
    ap.add_argument("--precision", default="16-mixed", help="Lightning precision (GPU: 16-mixed)")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args(argv)
    args.datasets = list(DATASETS) if args.datasets == "all" else args.datasets.split(",")
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        raise ValueError(f"--datasets: unknown {unknown}; known: {', '.join(DATASETS)}")
    try:
        args.shots = [int(s) for s in args.shots.split(",")]
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ValueError("--shots and --seeds are comma lists of integers") from None
    return args


def backbone(args) -> dict:
    """The backbone section: a local checkpoint (the default path), a cached tag, or (tiny
    configs only) the offline stand-in."""
    from .build import TINY_CONFIGS

    if args.checkpoint is not None:
        _need(args.checkpoint, "checkpoint file")
        return {"name": args.model, "checkpoint": str(args.checkpoint), "pretrained": None}
    if args.pretrained or args.model in TINY_CONFIGS:
        return {"name": args.model, "pretrained": args.pretrained or "lorakit-shapes"}
    raise ValueError(f"give --checkpoint /path/to/{args.model} weights (or --pretrained TAG)")


def run_config(args, bb: dict, name: str, split_file: Path, shots: int, seed: int) -> dict:
    from .pipeline import DEFAULTS

    cfg = load_config(None, [], DEFAULTS)
    cfg["backbone"] |= bb
    cfg["data"] |= {"split_file": str(split_file), "image_root": "/", "shots": shots,
                    "seed": seed, "workers": args.workers}
    cfg["head"] = {"templates": [DATASETS[name].template], "logit_scale": None}
    cfg["adapter"] = {"method": "lora", "r": 2, "alpha": 1.0, "dropout": 0.25,
                      "towers": "both", "modules": ["q", "k", "v"]}
    cfg["optim"] |= {"lr": 2e-4, "batch_size": 32, "schedule": "cosine", "weight_decay": 1e-2}
    cfg["trainer"] = {"max_steps": args.steps_per_shot * shots, "seed": seed,
                      "accelerator": args.accelerator, "precision": args.precision,
                      "progress": False, "checkpoint_every": 500}
    return cfg


def cli(argv: list[str]) -> None:
    args = parse(argv)
    bb = backbone(args)
    splits = {name: read_dataset(args.data_root, name) for name in args.datasets}  # all first
    for name, s in splits.items():
        small = min(sum(1 for _, y in s["train"].items if y == c) for c in range(len(s["train"].classnames)))
        if small < max(args.shots):
            raise ValueError(f"{name}: a class has {small} training images, fewer than {max(args.shots)} shots")
    results = []
    for name, s in splits.items():
        split_file = args.out / name / "split.json"  # absolute paths: one format for all 11
        fewshot.write_coop_split(split_file, {k: _abs(v) for k, v in s.items()}, "/")
        for shots in args.shots:
            accs = [_run(args, bb, name, split_file, shots, seed) for seed in args.seeds]
            m, h = mean_ci(accs)
            results.append({"dataset": name, "shots": shots, "accuracy": m, "ci": h, "seeds": accs})
            print(f"{name} {shots}-shot: {100 * m:.2f}", flush=True)
    write_json(args.out / "results.json", {"results": results, "backbone": bb})
    (args.out / "results.md").write_text(table(results))
    print(table(results))


def _abs(split: fewshot.Split) -> fewshot.Split:
    return fewshot.Split([(Path(p).resolve(), y) for p, y in split.items], split.classnames)


def _run(args, bb, name, split_file, shots, seed) -> float:
    from .pipeline import train

    out = args.out / name / f"shots{shots}" / f"seed{seed}"
    if (out / "metrics.json").is_file():
        return float(read_json(out / "metrics.json", "metrics")["accuracy"])
    return float(train(run_config(args, bb, name, split_file, shots, seed), out)["accuracy"])


def table(results: list[dict]) -> str:
    shots = sorted({r["shots"] for r in results})
    names = list(dict.fromkeys(r["dataset"] for r in results))
    cell = {(r["dataset"], r["shots"]): r for r in results}
    lines = ["| dataset | " + " | ".join(f"{k} shots" for k in shots) + " |",
             "|---" * (len(shots) + 1) + "|"]
    for n in names:
        vals = []
        for k in shots:
            r = cell[(n, k)]
            ci = f" ± {100 * r['ci']:.1f}" if r["ci"] == r["ci"] else ""
            vals.append(f"{100 * r['accuracy']:.1f}{ci}")
        lines.append(f"| {n} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"
