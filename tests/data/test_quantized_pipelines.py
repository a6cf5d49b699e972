"""``backbone.quantize`` in clip, cod and ood (the shared runtime's ``QuantizedBase``): a
tiny quantized run trains on packed codes, keeps them in ``base_quantized.safetensors``,
resumes exactly after a crash, and ``eval`` / ``adapted_model`` load those codes; a bad
spec is refused in one line before anything is written."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from lorakit.core.quant import options as quant_opts
from lorakit.core.quant import quant_layers
from lorakit.core.quant.options import BASE_FILE
from lorakit.data.runs import deep_update, load_config


def _clip(root: Path, tmp: Path, quant: dict) -> tuple:
    from lorakit.data.captions import COMBOS, classname
    from lorakit.data.fewshot import generate_shapes_dataset
    from lorakit.vision.clip import pipeline

    spec = {"classes": [classname(p) for p in COMBOS.task[:4]], "train_per_class": 4,
            "test_per_class": 4, "size": 32, "seed": 0, "style": "dark"}
    data = generate_shapes_dataset(root / "shapes", spec)
    cfg = load_config(None, [
        f"data.root={data}", "optim.lr=0.01", "optim.batch_size=8", "trainer.max_steps=6",
        "trainer.progress=false", "trainer.checkpoint_every=3", "trainer.accelerator=cpu",
        "adapter.method=qlora", "adapter.modules=[q, k, v, o, mlp]",
    ], pipeline.DEFAULTS)
    cfg["backbone"]["quantize"] = quant
    return pipeline, cfg, "accuracy"


def _cod(root: Path, tmp: Path, quant: dict) -> tuple:
    from lorakit.vision.sam import pipeline

    cfg = load_config(None, [
        f"data.cache={root / 'cod'}", "data.n_train=4", "data.n_test=2", "data.size=64",
        "backbone.img_size=64", "backbone.embed_dim=32", "backbone.window=2", "backbone.dim=32",
        "backbone.pretrain_steps=0", "optim.batch_size=2", "trainer.max_steps=6",
        "trainer.checkpoint_every=3", "trainer.progress=false", "eval.progress=false",
        "eval.grid=2", "eval.zero_shot=false", "adapter.method=loftq", "adapter.fusion=false",
    ], pipeline.DEFAULTS)
    cfg["backbone"]["quantize"] = quant
    return pipeline, cfg, "s_measure"


def _ood(root: Path, tmp: Path, quant: dict) -> tuple:
    from lorakit.vision.ood import pipeline

    cfg = deep_update(copy.deepcopy(pipeline.DEFAULTS), {
        "data": {"root": str(root / "ood"), "shift": {
            "classes": ["circle", "square", "triangle"], "size": 16, "train_per_class": 4,
            "test_per_class": 2, "ood_per_class": 2, "ood_styles": ["sketch"]}},
        "backbone": {"kind": "tiny_vit", "image_size": 16, "patch_size": 8, "width": 32,
                     "depth": 2, "heads": 2, "quantize": quant},
        "adapter": {"method": "loftq", "r": 2, "alpha": 2},
        "optim": {"lr": 0.01, "batch_size": 4},
        "eval": {"corruptions": [], "wise_alphas": [0.0, 1.0]},
        "trainer": {"max_steps": 6, "checkpoint_every": 3, "progress": False},
    })
    return pipeline, cfg, "id_accuracy"


PIPELINES = {"clip": _clip, "cod": _cod, "ood": _ood}
SPEC = {"bits": 4, "group_size": 16}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("quant-data")


class Seen(L.Callback):
    """The packed codes of every quantized layer the fit ran on, at train start."""

    def __init__(self):
        self.codes = {}

    def on_train_start(self, trainer, module) -> None:
        self.codes = {n: m.packed.clone() for n, m in quant_layers(module)}


class Crash(L.Callback):
    """Dies at step 4, after the step-3 checkpoint was written."""

    def on_train_batch_start(self, trainer, *args):
        if trainer.global_step == 4:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_quantized_run_trains_resumes_and_evaluates_on_its_codes(name, data_root, tmp_path,
                                                                 monkeypatch):
    pipeline, cfg, headline = PIPELINES[name](data_root, tmp_path, dict(SPEC))
    seen = Seen()
    full = pipeline.train(cfg, tmp_path / "full", callbacks=[seen])
    q = full["quantized"]
    assert q["bits"] == [4] and len(seen.codes) > 0
    assert q["quantized_layer_bytes"] < 0.2 * q["quantized_layer_fp32_bytes"]
    saved = {k.removesuffix(".packed"): v  # the codes training ran on, by layer name
             for k, v in load_file(tmp_path / "full" / BASE_FILE).items() if k.endswith(".packed")}
    trained = {layer: codes.cpu() for n, codes in seen.codes.items()  # the fit's module names
               for layer in saved if n == layer or n.endswith("." + layer)}
    assert trained.keys() == saved.keys() and q["layers"] == len(saved)
    assert all(torch.equal(saved[n], c) for n, c in trained.items())
    if name == "ood":  # the trained head is never quantized; no WiSE-FT on frozen codes
        assert not any(n.startswith("head") for n in saved) and full["wise"] == []

    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.train(cfg, tmp_path / "cut", callbacks=[Crash()])
    resumed = pipeline.train(cfg, tmp_path / "cut")
    assert resumed["resumed_from_step"] == 3 and resumed["steps"] == full["steps"] == 6
    a = load_file(tmp_path / "full" / "adapter" / "adapter.safetensors")
    b = load_file(tmp_path / "cut" / "adapter" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed[headline] == full[headline]

    loaded = []  # eval turns the rebuilt float model into the run's saved base
    real = quant_opts.load_quantized
    monkeypatch.setattr(quant_opts, "load_quantized",
                        lambda model, path, *a: loaded.append(Path(path)) or real(model, path, *a))
    again = pipeline.evaluate(tmp_path / "full", {})
    assert loaded == [tmp_path / "full" / BASE_FILE]
    assert again[headline] == pytest.approx(full[headline], abs=1e-6)
    model = pipeline.adapted_model(tmp_path / "full")  # squeeze's loader: the same codes
    layers = {n.removeprefix("clip."): m.packed for n, m in quant_layers(model)}
    assert layers.keys() == saved.keys()
    assert all(torch.equal(layers[n], c) for n, c in trained.items())


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_bad_quantize_spec_is_one_line(name, data_root, tmp_path):
    pipeline, cfg, _ = PIPELINES[name](data_root, tmp_path, {"bits": 5})
    with pytest.raises(ValueError, match=r"^backbone\.quantize: bits must be one of") as err:
        pipeline.train(cfg, tmp_path / "run")
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()
    cfg["backbone"]["quantize"] = {"bits": 4, "size": 3}
    with pytest.raises(ValueError, match=r"backbone\.quantize: unknown key\(s\) \['size'\]"):
        pipeline.train(cfg, tmp_path / "run")


def test_ood_full_fine_tuning_refuses_a_quantized_base(data_root, tmp_path):
    pipeline, cfg, _ = _ood(data_root, tmp_path, dict(SPEC))
    cfg["adapter"]["method"] = "full"
    with pytest.raises(ValueError, match="full trains every weight"):
        pipeline.train(cfg, tmp_path / "run")


def test_continual_clip_refuses_a_quantized_base():
    """The continual loop builds its own float CLIP: a quantize spec there is refused, not
    silently ignored."""
    from lorakit.vision.clip.continual import GENERATED, ClipTasks

    tasks = list(GENERATED)[:2]
    ClipTasks({"backbone": {"quantize": {}}}, tasks)  # the default: a float base
    with pytest.raises(ValueError, match="continual loop trains on a float base"):
        ClipTasks({"backbone": {"quantize": {"bits": 4}}}, tasks)


class FirstAdapter(L.Callback):
    """The trainable adapter tensors (LQ-LoRA's ``L1``, ``L2``) at train start."""

    def __init__(self):
        self.init = {}

    def on_train_start(self, trainer, module) -> None:
        self.init = {n: p.detach().clone() for n, p in module.named_parameters()
                     if p.requires_grad}


@pytest.mark.parametrize("name", ["clip", "cod", "ood"])
def test_lq_lora_fisher_from_the_runs_own_batches(name, data_root, tmp_path):
    """``adapter.fisher: true`` estimates the diagonal Fisher from the run's first
    ``fisher_batches`` batches before the decomposition (the initial ``L1 L2`` differs
    from the unweighted run's), records it, and a crashed run resumes to the same adapter."""
    pipeline, cfg, _ = PIPELINES[name](data_root, tmp_path, dict(SPEC))
    nested = name in ("cod", "ood")  # their method fields go under adapter.hyper
    hyper = cfg["adapter"].setdefault("hyper", {}) if nested else cfg["adapter"]
    cfg["adapter"].update(method="lq_lora", r=2, alpha=2.0)
    hyper.update(lq_iters=2)
    plain = FirstAdapter()
    off = pipeline.train(cfg, tmp_path / "off", callbacks=[plain])
    hyper.update(fisher=True, fisher_batches=2)
    weighted = FirstAdapter()
    full = pipeline.train(cfg, tmp_path / "full", callbacks=[weighted])
    assert full["quantized"]["fisher_batches"] == 2 and "fisher_batches" not in off["quantized"]
    assert plain.init.keys() == weighted.init.keys() and len(plain.init) > 0
    absorbed = {n.removesuffix(".B") for n, t in plain.init.items()  # B = L1 != 0: the
                if n.endswith(".B") and t.abs().sum() > 0}  # quantized Linear layers
    changed = {n for n in plain.init if not torch.equal(plain.init[n], weighted.init[n])}
    assert absorbed and changed == {n for n in plain.init if n.rpartition(".")[0] in absorbed}
    stored = load_config(tmp_path / "full" / "config.yaml")["adapter"]
    assert (stored["hyper"] if nested else stored)["fisher_batches"] == 2

    with pytest.raises(RuntimeError, match="simulated crash"):
        pipeline.train(cfg, tmp_path / "cut", callbacks=[Crash()])
    again = FirstAdapter()
    resumed = pipeline.train(cfg, tmp_path / "cut", callbacks=[again])
    assert resumed["resumed_from_step"] == 3 and resumed["quantized"]["fisher_batches"] == 2
    a = load_file(tmp_path / "full" / "adapter" / "adapter.safetensors")
    b = load_file(tmp_path / "cut" / "adapter" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    codes = [load_file(tmp_path / run / BASE_FILE) for run in ("full", "cut")]
    assert all(torch.equal(codes[0][k], codes[1][k]) for k in codes[0])


def test_cod_zero_shot_compares_with_the_float_sam(data_root, tmp_path):
    """A cod run on a quantized SAM reports the float SAM's zero-shot under ``zero_shot``
    (what a float zero-shot run scores) and the plainly quantized SAM's under
    ``zero_shot_quantized`` (what a quantized zero-shot run scores); the quantized
    zero-shot run itself gets the float ``zero_shot`` beside its own headline."""
    pipeline, cfg, _ = _cod(data_root, tmp_path, dict(SPEC))
    cfg["eval"]["zero_shot"] = True
    trained = pipeline.train(cfg, tmp_path / "trained")
    cfg["adapter"]["method"] = "none"
    zs_quant = pipeline.train(cfg, tmp_path / "zs_quant")
    cfg["backbone"]["quantize"] = {}
    zs_float = pipeline.train(cfg, tmp_path / "zs_float")
    assert "zero_shot" not in zs_float and "quantized" not in zs_float
    keys = ("s_measure", "mae")
    assert zs_quant["s_measure"] != zs_float["s_measure"]  # quantization changes SAM here
    for k in keys:
        assert trained["zero_shot"][k] == pytest.approx(zs_float[k], abs=1e-9)
        assert trained["zero_shot_quantized"][k] == pytest.approx(zs_quant[k], abs=1e-9)
        assert zs_quant["zero_shot"][k] == pytest.approx(zs_float[k], abs=1e-9)
    again = pipeline.evaluate(tmp_path / "trained", {})  # eval reports the same pair
    assert again["zero_shot"]["s_measure"] == pytest.approx(zs_float["s_measure"], abs=1e-9)
    assert again["zero_shot_quantized"]["s_measure"] == pytest.approx(zs_quant["s_measure"],
                                                                      abs=1e-9)

