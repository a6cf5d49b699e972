"""Box supervision, the pseudo-label rounds and the distilled student (tiny, seconds)."""

import numpy as np
import pytest
import torch

from lorakit.data.camouflage import CamouflageSpec, generate_cod
from lorakit.data.cod import CODFolder, CODSample
from lorakit.data.runs import load_config
from lorakit.vision.sam import pipeline
from lorakit.vision.sam.distill import (
    DistillConfig,
    evaluate_student,
    load_student,
    train_student,
)
from lorakit.vision.sam.losses import box_projection
from lorakit.vision.sam.prompts import PromptOptions, label_map
from lorakit.vision.sam.selftrain import constrain


def _cfg(tmp_path, *extra):
    sets = [
        f"data.cache={tmp_path / 'cache'}",
        "data.n_train=6",
        "data.n_test=4",
        "data.size=64",
        "backbone.img_size=64",
        "backbone.embed_dim=32",
        "backbone.window=2",
        "backbone.dim=32",
        "backbone.pretrain_steps=0",
        "optim.batch_size=2",
        "trainer.max_steps=3",
        "trainer.log_every=1",
        "trainer.checkpoint_every=100",
        "trainer.progress=false",
        "eval.progress=false",
        "eval.grid=2",
        "eval.zero_shot=false",
        "prompts.labels=box",
        "prompts.mode=box",
        *extra,
    ]
    return load_config(None, sets, pipeline.DEFAULTS)


def test_box_labels_are_background_outside_unknown_inside():
    sample = CODSample("a", np.zeros((20, 30, 3), np.uint8), box=[5, 4, 12, 9])
    lab = label_map(sample, "box")
    assert lab.shape == (20, 30)
    assert (lab[4:10, 5:13] == 0).all() and (lab == 2).sum() == 20 * 30 - 6 * 8
    with pytest.raises(ValueError, match="prompts.mode to box"):
        PromptOptions(mode="points", labels="box").validate()
    assert PromptOptions(mode="box", labels="box").weak == ("box",)


def test_box_projection_prefers_a_mask_that_fills_its_box():
    boxes = torch.tensor([[8.0, 8.0, 23.0, 23.0]])
    fill = torch.full((1, 1, 32, 32), -8.0)
    fill[..., 8:24, 8:24] = 8.0
    part = torch.full((1, 1, 32, 32), -8.0)
    part[..., 12:18, 12:18] = 8.0  # inside the box but touching none of its sides
    spill = torch.full((1, 1, 32, 32), 8.0)  # everywhere, also outside the box
    lf, lp, ls = (box_projection(x, boxes).item() for x in (fill, part, spill))
    assert lf < 0.01 and lp > 0.3 and ls > 0.2


def test_pseudo_labels_respect_the_box_and_the_given_labels():
    prob = np.full((16, 16), 0.95, np.float32)  # a teacher that says "object" everywhere
    prob[0, 0] = 0.05
    box = [4, 4, 9, 9]
    lab = constrain(prob, np.zeros((16, 16), np.uint8), box, "box", fg=0.7, bg=0.3)
    inside = np.zeros((16, 16), bool)
    inside[4:10, 4:10] = True
    assert (lab[~inside] == 2).all() and (lab[inside] == 1).all()
    prob[5, 5] = 0.5  # unsure -> unknown
    assert constrain(prob, np.zeros((16, 16), np.uint8), box, "box", 0.7, 0.3)[5, 5] == 0
    scribble = np.zeros((16, 16), np.uint8)
    scribble[6, 6] = 2  # a scribble's background pixel wins over the teacher
    lab = constrain(prob, scribble, None, "scribble", 0.7, 0.3)
    assert lab[6, 6] == 2 and lab[0, 0] == 2 and lab[1, 1] == 1


def test_box_supervised_run_with_self_training_and_distillation(tmp_path):
    extra = (
        "selftrain.rounds=1",
        "selftrain.steps=2",
        "distill.enabled=true",
        "distill.arch=lraspp_mobilenet_v3_small",
        "distill.size=64",
        "distill.steps=2",
    )
    run = tmp_path / "run"
    m = pipeline.train(_cfg(tmp_path, *extra), run)
    assert m["steps"] == 3 + 2 and 0 <= m["s_measure"] <= 1
    (rnd,) = m["selftrain"]
    q = rnd["pseudo_labels"]  # the generated scenes carry GT: pseudo-label diagnostics
    assert 0 < q["labelled_fraction"] <= 1 and 0 <= q["foreground_iou"] <= 1
    assert (run / "rounds" / "r1" / "checkpoints" / "last.ckpt").is_file()
    logged = (run / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train_box_projection" in logged
    d = m["distilled"]
    assert d["arch"] == "lraspp_mobilenet_v3_small" and 0 <= d["s_measure"] <= 1
    net, size = load_student(run / "distilled")
    folder = CODFolder(pipeline._generated(_cfg(tmp_path), "test"), need_gt=True)
    again = evaluate_student(net, folder, size)
    assert again["s_measure"] == pytest.approx(d["s_measure"], abs=1e-6)


def test_distilled_student_learns_from_pseudo_labels(tmp_path):
    """Trained on (here: perfect) pseudo-labels, the prompt-free student scores clearly
    better on its images than the same network after one step."""
    root = generate_cod(tmp_path / "cod", CamouflageSpec(n=6, size=64, difficulty=0.0, seed=3))
    folder = CODFolder(root, need_gt=True)
    pseudo = {
        s.name: np.where(s.gt, 1, 2).astype(np.uint8) for s in map(folder.__getitem__, range(6))
    }
    torch.manual_seed(0)
    scores = {}
    for steps in (1, 60):
        cfg = DistillConfig(
            arch="lraspp_mobilenet_v3_small", size=64, steps=steps, lr=3e-2, batch_size=6
        )
        scores[steps] = evaluate_student(train_student(pseudo, folder, cfg), folder, 64)
    assert scores[60]["s_measure"] > scores[1]["s_measure"] + 0.2  # measured 0.74 vs 0.21
    assert scores[60]["mae"] < scores[1]["mae"]
    with pytest.raises(ValueError, match="no pseudo-label for training image 0000"):
        train_student({}, folder, DistillConfig(arch="lraspp_mobilenet_v3_small", size=64))


def test_selftrain_and_distill_settings_are_checked_before_any_work(tmp_path):
    bad = [
        (("selftrain.rounds=1", "trainer.devices=2"), "run in one process"),
        (("selftrain.fg=0.2", "selftrain.bg=0.5"), "need 0 <= bg < fg <= 1"),
        (("distill.arch=resnet1000",), "distill.arch must be one of"),
        (("distill.size=50",), "multiple of 16"),
    ]
    for extra, message in bad:
        with pytest.raises(ValueError, match=message):
            pipeline.train(_cfg(tmp_path, *extra), tmp_path / "run")
        assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
