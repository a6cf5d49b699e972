"""End-to-end runs of the CLIP pipeline on the generated 4-class task (tiny CLIP, CPU)."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from lorakit.data import fewshot
from lorakit.vision.clip import pipeline


@pytest.mark.parametrize("method", ["lora", "block_lora", "comp_lora"])
def test_train_beats_chance_and_eval_recomputes(method, run_cfg, tmp_path):
    metrics = pipeline.train(run_cfg(f"adapter.method={method}"), tmp_path)
    assert metrics["chance"] == 0.25
    assert metrics["accuracy"] >= 0.5, metrics  # 4 classes: chance is 0.25
    assert metrics["accuracy"] >= metrics["zero_shot_accuracy"] + 0.15, metrics
    assert metrics["steps"] == 60 and metrics["method"] == method
    assert json.loads((tmp_path / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    for name in (
        "adapter/adapter_config.json",
        "adapter/adapter.safetensors",
        "config.yaml",
        "per_class.csv",
        "plots/training_curve.png",
        "plots/per_class_accuracy.png",
        "logs/metrics.csv",
    ):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "plots/comp_lora_spectrum.png").is_file() == (method == "comp_lora")
    again = pipeline.evaluate(tmp_path, {})
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])
    written = json.loads((tmp_path / "eval" / "all.json").read_text())  # the one layout
    assert written == json.loads((tmp_path / "metrics_eval.json").read_text())  # the old name
    assert written["accuracy"] == again["accuracy"]
    assert again["zero_shot_accuracy"] == pytest.approx(metrics["zero_shot_accuracy"])


class _Interrupt(L.Callback):
    """Crashes at step 33: after the step-30 checkpoint was written (Lightning runs the
    checkpoint callback at the end of step 30's batch), three steps into the next stretch."""

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 33:
            assert (Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt").is_file()
            raise RuntimeError("simulated crash")


def test_resume_after_crash_equals_uninterrupted_run(run_cfg, tmp_path):
    cfg = run_cfg("adapter.method=comp_lora")
    full = pipeline.train(cfg, tmp_path / "full")
    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.train(cfg, tmp_path / "cut", callbacks=[_Interrupt()])
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = pipeline.train(cfg, tmp_path / "cut")
    assert resumed["resumed_from_step"] == 30 and full["resumed_from_step"] == 0
    assert resumed["steps"] == 60
    drop = ("resumed_from_step",)
    assert {k: v for k, v in resumed.items() if k not in drop} == {
        k: v for k, v in full.items() if k not in drop
    }
    a = load_file(tmp_path / "full" / "adapter" / "adapter.safetensors")
    b = load_file(tmp_path / "cut" / "adapter" / "adapter.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = (tmp_path / "cut" / "logs" / "metrics.csv").read_text()
    assert log == (tmp_path / "full" / "logs" / "metrics.csv").read_text()


def test_base_to_novel_and_heldout_retention(run_cfg, tmp_path):
    heldout = {
        "generate": {
            "classes": ["purple hexagon", "orange cross", "pink ring"],
            "train_per_class": 1,
            "test_per_class": 4,
            "size": 32,
            "seed": 9,
        }
    }
    m = pipeline.train(
        run_cfg(
            "data.base_novel=true", "trainer.max_steps=20", f"data.heldout={json.dumps(heldout)}"
        ),
        tmp_path,
    )
    assert m["chance"] == 0.5 and m["base_accuracy"] == m["accuracy"]
    assert 0 <= m["novel_accuracy"] <= 1
    h = m["harmonic_mean"]
    assert h == pytest.approx(
        2 * m["base_accuracy"] * m["novel_accuracy"] / (m["base_accuracy"] + m["novel_accuracy"])
    )
    assert {"heldout_zero_shot_before", "heldout_zero_shot_after", "zero_shot_retention"} <= set(m)
    assert (tmp_path / "heldout" / "test" / "pink_ring").is_dir()
    cfg = (tmp_path / "config.yaml").read_text()
    assert str(tmp_path / "heldout") in cfg  # the generated folder is recorded for eval


def test_coop_split_file_as_data_source(run_cfg, shapes_root, tmp_path):
    train = fewshot.read_image_folder(shapes_root / "train")
    test = fewshot.read_image_folder(shapes_root / "test", train.classnames)
    split = fewshot.write_coop_split(
        tmp_path / "split_shapes.json", {"train": train, "test": test}, shapes_root
    )
    m = pipeline.train(
        run_cfg(
            "data.root=null",
            f"data.split_file={split}",
            f"data.image_root={shapes_root}",
            "trainer.max_steps=5",
        ),
        tmp_path / "run",
    )
    assert m["n_test"] == len(test.items) and m["steps"] == 5


def test_bad_inputs_raise_clear_errors(run_cfg, tmp_path):
    with pytest.raises(ValueError, match="fewer than shots=9"):
        pipeline.train(run_cfg("data.shots=9"), tmp_path / "a")
    with pytest.raises(ValueError, match="data: set root"):
        pipeline.train(run_cfg("data.root=null"), tmp_path / "b")
    with pytest.raises(ValueError, match=r"data: unknown key\(s\) \['shot'\]"):
        pipeline.train(run_cfg("data.shot=2"), tmp_path / "c")
    with pytest.raises(ValueError, match="optim.lr must be a number"):
        pipeline.train(run_cfg("optim.lr=fast"), tmp_path / "d")
    with pytest.raises(ValueError, match="not a lorakit run folder"):
        pipeline.evaluate(tmp_path / "nothing", {})


def test_demo_config_runs_end_to_end(tmp_path):
    from pathlib import Path

    from lorakit.data.runs import load_config

    demo = Path(__file__).parents[3] / "demos" / "clip.yaml"
    cfg = load_config(demo, ["trainer.max_steps=10", "trainer.progress=false"], pipeline.DEFAULTS)
    m = pipeline.train(cfg, tmp_path)
    assert m["method"] == "comp_lora" and m["steps"] == 10
    assert {"accuracy", "zero_shot_accuracy", "zero_shot_retention"} <= set(m)
    assert (tmp_path / "plots" / "comp_lora_spectrum.png").is_file()
    assert pipeline.evaluate(tmp_path, {})["accuracy"] == pytest.approx(m["accuracy"])


def test_comp_lora_run_squeezes_through_its_rebuilt_base(run_cfg, tmp_path):
    """A Comp-LoRA adapter file holds no U_k (the base determines it), so ``lorakit squeeze``
    on the run folder reads each dW from the run's model, rebuilt by the pipeline."""
    from lorakit.apps.cli.squeeze import squeeze_run
    from lorakit.core.squeeze import adapter_deltas

    run = tmp_path / "run"
    pipeline.train(run_cfg("adapter.method=comp_lora", "trainer.max_steps=3"), run)
    assert not [k for k in load_file(run / "adapter" / "adapter.safetensors") if "U_k" in k]
    with pytest.raises(ValueError, match="squeeze its run folder"):
        adapter_deltas(run / "adapter")
    out, report = squeeze_run(run, 1)
    _, want, _ = adapter_deltas(run / "adapter", lambda: pipeline.adapted_model(run))
    assert report["from_method"] == "comp_lora" and set(report["relative_error"]) == set(want)
    assert all(0 <= e < 1 for e in report["relative_error"].values())
    again = pipeline.evaluate(out, {})
    assert 0 <= again["accuracy"] <= 1
