import json

import pytest
from PIL import Image
from safetensors.torch import load_file

from lorakit.data.runs import load_config
from lorakit.vision.sam import pipeline
from lorakit.vision.sam.predict import predict_file


def _cfg(tmp_path, *extra):
    sets = [
        f"data.cache={tmp_path / 'cache'}",
        "data.n_train=8",
        "data.n_test=4",
        "data.size=64",
        "backbone.img_size=64",
        "backbone.embed_dim=32",
        "backbone.window=2",
        "backbone.dim=32",
        "backbone.pretrain_steps=0",
        "optim.batch_size=2",
        "trainer.max_steps=4",
        "trainer.log_every=1",
        "trainer.checkpoint_every=2",
        "trainer.progress=false",
        "eval.progress=false",
        "eval.grid=2",
        "eval.zero_shot=false",
        *extra,
    ]
    return load_config(None, sets, pipeline.DEFAULTS)


def test_train_writes_run_and_eval_recomputes(tmp_path):
    run = tmp_path / "run"
    m = pipeline.train(_cfg(tmp_path, "eval.zero_shot=true"), run)
    saved = json.loads((run / "metrics.json").read_text())
    assert {"s_measure", "mae", "e_measure_mean", "e_measure_max", "weighted_f"} <= set(saved)
    assert 0 <= saved["s_measure"] <= 1 and saved["steps"] == 4 and "zero_shot" in saved
    # the fusion head travels in the adapter file (modules_to_save), no file of its own
    assert not (run / "adapter" / "fusion.safetensors").exists()
    keys = load_file(run / "adapter" / "adapter.safetensors")
    assert any(k.startswith("modules_to_save.mask_decoder.output_upscaling.fusion.") for k in keys)
    assert (run / "plots" / "overlays_synthetic.png").is_file() and (
        run / "plots" / "training_curve.png"
    ).is_file()
    again = pipeline.evaluate(run, {"zero_shot": False})
    assert again["s_measure"] == pytest.approx(m["s_measure"], abs=1e-6)
    written = json.loads((run / "eval" / "all.json").read_text())  # the one layout
    assert written == json.loads((run / "metrics.json").read_text())  # the old place
    assert written["s_measure"] == again["s_measure"]
    assert again["mae"] == pytest.approx(m["mae"], abs=1e-6)
    out = predict_file(
        run,
        run.parent / "cache" / "test-n4-px64-d0.5-seed7919" / "Imgs" / "0000.png",
        tmp_path / "pred",
    )
    assert Image.open(out["mask"]).size == (64, 64) and Image.open(out["overlay"]).mode == "RGB"


def test_longer_rerun_continues_from_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    first = pipeline.train(_cfg(tmp_path, "trainer.max_steps=2"), run)
    assert first["resumed_from_step"] == 0 and (run / "checkpoints" / "last.ckpt").is_file()
    a1 = (run / "adapter" / "adapter.safetensors").read_bytes()
    second = pipeline.train(_cfg(tmp_path, "trainer.max_steps=4"), run)
    assert second["resumed_from_step"] == 2 and second["steps"] == 4
    assert (run / "adapter" / "adapter.safetensors").read_bytes() != a1
    steps = [line.split(",")[1] for line in (run / "logs" / "metrics.csv").read_text().split()[1:]]
    assert steps == ["0", "1", "2", "3"]  # the log of the first part is kept and continued


@pytest.mark.parametrize(
    ("extra", "method"),
    [
        (("adapter.method=lora",), "lora"),
        (("adapter.method=none",), "none"),
        (("loss.contrastive=0", "loss.consistency=0", "adapter.fusion=false"), "fora"),
        (("prompts.mode=points+box", "prompts.labels=points"), "fora"),
    ],
)
def test_baselines_and_ablations_run(tmp_path, extra, method):
    m = pipeline.train(_cfg(tmp_path, *extra), tmp_path / "run")
    assert m["method"] == method
    assert 0 <= m["s_measure"] <= 1 and 0 <= m["mae"] <= 1
    if method == "none":
        assert "steps" not in m and not (tmp_path / "run" / "adapter").exists()
    else:
        assert m["steps"] == 4 and (tmp_path / "run" / "adapter" / "adapter.safetensors").is_file()
        logged = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()[0]
        # a switched-off loss is not computed (and so never logged)
        assert ("train_contrastive" in logged) == ("loss.contrastive=0" not in extra)
        assert ("train_consistency" in logged) == ("loss.consistency=0" not in extra)


def test_bad_inputs_are_value_errors(tmp_path):
    cfg = _cfg(tmp_path)
    test_root = pipeline._generated(cfg, "test")
    (test_root / "GT" / "0003.png").unlink()
    with pytest.raises(ValueError, match=r"GT/0003\.png"):
        pipeline.train(cfg, tmp_path / "run")
    with pytest.raises(ValueError, match="every loss is switched off"):
        pipeline.train(
            _cfg(tmp_path, "loss.pbce=false", "loss.contrastive=0", "loss.consistency=0"),
            tmp_path / "r2",
        )
    with pytest.raises(ValueError, match="no trained adapter"):
        pipeline.load_model(pipeline.RunFolder(tmp_path / "r3"), cfg)


@pytest.fixture(scope="module")
def sam_cache(tmp_path_factory):
    """One cache for the learning tests: the tiny SAM is pretrained once per module."""
    return tmp_path_factory.mktemp("sam-cache")


def _learned(tmp_path, cache, pretrain, steps, n_train, *extra):
    cfg = load_config(
        None,
        [
            f"data.cache={tmp_path / 'cache'}",
            f"backbone.cache={cache}",
            f"data.n_train={n_train}",
            "data.n_test=16",
            f"backbone.pretrain_steps={pretrain}",
            f"trainer.max_steps={steps}",
            "trainer.progress=false",
            "eval.progress=false",
            "trainer.checkpoint_every=1000",
            *extra,
        ],
        pipeline.DEFAULTS,
    )
    return pipeline.train(cfg, tmp_path / "run")


def test_fora_beats_zero_shot_quick(tmp_path, sam_cache):
    # on colour-cued scenes; on the colour-matched texture scenes 60 steps of scribble FoRA
    # stay level with zero-shot (measured S 0.510 vs 0.514 at difficulty 0.3)
    m = _learned(tmp_path, sam_cache, 100, 60, 32, "data.cue=colour")
    assert m["s_measure"] > m["zero_shot"]["s_measure"] + 0.01


def test_box_supervised_fora_beats_box_prompted_zero_shot(tmp_path, sam_cache):
    """The box is the prompt for both and the only label for training. Measured on the
    generated scenes: the trained model's maps are cleaner (MAE, E-measure); its S-measure
    stays level with zero-shot's (demos/results/bench_cod.md), so it is not asserted."""
    box = ("prompts.labels=box", "prompts.mode=box", "optim.lr=0.01", "loss.consistency=0")
    scenes = ("data.difficulty=0.3", "backbone.pretrain_cue=texture")  # measured: MAE 0.18 vs 0.26
    m = _learned(tmp_path, sam_cache, 100, 40, 32, *box, *scenes)
    assert m["mae"] < m["zero_shot"]["mae"] - 0.02
    assert m["e_measure_mean"] > m["zero_shot"]["e_measure_mean"]


@pytest.mark.slow
def test_fora_clearly_beats_zero_shot(tmp_path, sam_cache):
    m = _learned(tmp_path, sam_cache, 150, 100, 64, "data.cue=colour")
    assert m["s_measure"] > m["zero_shot"]["s_measure"] + 0.04
    assert m["mae"] < m["zero_shot"]["mae"] + 0.01  # S-measure gains; MAE stays level
