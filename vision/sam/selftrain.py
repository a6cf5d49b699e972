"""Teacher-student self-training: pseudo-labels refined in rounds (FCL-COD's loop).

After the weakly supervised fit (round 0), each round ``r = 1..rounds``:

1. the teacher (the EMA teacher of the last round, or the student when consistency is
   off) predicts every TRAINING image with its weak prompt (the box, or the points);
2. the prediction becomes a partial label map: probability ``>= fg`` -> foreground (1),
   ``<= bg`` -> background (2), in between unknown (0);
3. the weak labels constrain it: outside the box is background whatever the teacher says
   (box supervision), and a scribble's or a point's own labels always win;
4. the student continues training on these maps for ``steps`` optimizer steps (partial
   BCE, contrastive, consistency and box projection losses as configured), with a fresh
   EMA teacher copied from it.

No ground truth is read for training. Where the training folder has ``GT/`` (the generated
scenes do), ``label_quality`` reports how good each round's pseudo-labels are, as a
diagnostic only. Each round writes its own checkpoints under ``run/rounds/r<k>``, so a
killed run picks up at the round it was in.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from lorakit.data.cod import CODFolder
from lorakit.data.runs import RunFolder
from lorakit.data.runtime import SeededItems, StepSampler, TrainerOptions, build_trainer

from .config import SelfTrainConfig
from .dataset import CODTrainSet
from .evaluate import predict_folder
from .model import SamCOD
from .prompts import PromptOptions, label_map
from .train import CODModule, LossConfig, OptimConfig


def constrain(prob: np.ndarray, weak: np.ndarray, box, labels: str, fg: float, bg: float):
    """prob (H, W) in [0, 1] -> pseudo-label map (H, W) uint8 {0, 1, 2} under the weak labels.

    ``weak`` is the weak label map (``prompts.label_map``); ``box`` [x0, y0, x1, y1] or None.
    """
    out = np.zeros(prob.shape, np.uint8)
    out[prob >= fg] = 1
    out[prob <= bg] = 2
    if box is not None:  # nothing outside the box is object
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        inside = np.zeros(prob.shape, bool)
        inside[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = True
        out[~inside] = 2
    if labels != "box":  # scribble / point labels are given truth
        out[weak > 0] = weak[weak > 0]
    return out


def pseudo_labels(
    teacher: SamCOD, folder: CODFolder, prompts: PromptOptions, fg: float, bg: float, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(name -> pseudo-label map, name -> teacher probability), both at each image's size."""
    labels, probs = {}, {}
    for sample, prob in predict_folder(teacher, folder, prompts, seed):
        weak = label_map(sample, prompts.labels)
        labels[sample.name] = constrain(prob, weak, sample.box, prompts.labels, fg, bg)
        probs[sample.name] = prob
    return labels, probs


def label_quality(pseudo: dict[str, np.ndarray], folder: CODFolder) -> dict | None:
    """Diagnostics against ``GT/`` where it exists (never used for training): the fraction
    of pixels labelled, their accuracy, and the IoU of the foreground label with the object."""
    cover, acc, iou = [], [], []
    for i in range(len(folder)):
        sample = folder[i]
        if sample.gt is None:
            return None
        lab, gt = pseudo[sample.name], sample.gt
        known = lab > 0
        cover.append(known.mean())
        acc.append(((lab == 1) == gt)[known].mean() if known.any() else np.nan)
        fg = lab == 1
        iou.append((fg & gt).sum() / max(1, (fg | gt).sum()))
    return {
        "labelled_fraction": float(np.mean(cover)),
        "label_accuracy": float(np.nanmean(acc)),
        "foreground_iou": float(np.mean(iou)),
    }


def teacher_of(module: CODModule) -> SamCOD:
    return module.teacher if module.teacher is not None else module.model


def run_rounds(
    module: CODModule,
    folder: CODFolder,
    prompts: PromptOptions,
    st: SelfTrainConfig,
    opts: TrainerOptions,
    run_dir: Path,
    losses: LossConfig,
    optim: OptimConfig,
) -> tuple[CODModule, list[dict]]:
    """Rounds 1..``st.rounds``; returns the last round's module and one record per round."""
    model, records = module.model, []
    steps = st.steps or opts.max_steps
    for r in range(1, st.rounds + 1):
        teacher = teacher_of(module)
        pseudo, _ = pseudo_labels(teacher, folder, prompts, st.fg, st.bg, opts.seed)
        record = {"round": r, "steps": steps}
        quality = label_quality(pseudo, folder)
        if quality is not None:
            record["pseudo_labels"] = quality
        model.train()
        data = CODTrainSet(
            folder, prompts, model.size, augment=True, seed=opts.seed + r, pseudo=pseudo
        )
        ropts = replace(opts, max_steps=steps, seed=opts.seed + r)
        sampler = StepSampler(len(data), optim.batch_size, steps * ropts.accumulate, ropts.seed)
        loader = DataLoader(SeededItems(data), batch_sampler=sampler, num_workers=0)
        module = CODModule(model, losses, optim, prompts.mode, box_labels=prompts.labels == "box")
        trainer, ckpt = build_trainer(ropts, RunFolder(run_dir / f"r{r}"), sampler=sampler)
        trainer.fit(module, loader, ckpt_path=ckpt)
        records.append(record)
    return module, records
