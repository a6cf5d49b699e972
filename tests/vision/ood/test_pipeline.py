"""End to end on generated data: ID training + OOD evaluation for every method, LARGO's
radius constraint at every step of a real run, resume, and ``evaluate`` from the saved run."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lorakit.data.runs import RunFolder, build_trainer, trainer_options
from lorakit.vision.ood import pipeline
from lorakit.vision.ood.methods import MethodConfig, prepare
from lorakit.vision.ood.predict import load_run
from lorakit.vision.ood.train import LargoMonitor, OODModule, OptimConfig, largo_layers


@pytest.mark.parametrize("method", ["linear_probe", "full", "lora", "largo"])
def test_train_and_eval_each_method(tiny_cfg, tmp_path, method):
    m = pipeline.train(tiny_cfg(method), tmp_path / method)
    assert m["steps"] == 4 and m["method"] == method
    for key in ("id_accuracy", "accuracy", "ood_accuracy", "corruption_accuracy"):
        assert 0.0 <= m[key] <= 1.0, key
    assert set(m["ood"]) == {"sketch", "night", "sketch_subset"}
    assert set(m["corruptions"]) == {"gaussian_noise", "motion_blur"}
    assert set(m["corruptions"]["motion_blur"]) == {"1", "5"}
    assert [w["alpha"] for w in m["wise"]] == [0.0, 0.5, 1.0]
    assert m["wise"][-1]["id_accuracy"] == pytest.approx(m["id_accuracy"], abs=1e-9), m["wise"]
    run = tmp_path / method
    assert json.loads((run / "metrics.json").read_text())["id_accuracy"] == m["id_accuracy"]
    assert (run / "plots" / "id_vs_ood.png").is_file()
    # adapters carry the head as modules_to_save; only adapter-free methods write head.safetensors
    adapter = method in ("lora", "largo")
    assert (run / "adapter" / "head.safetensors").is_file() != adapter
    if adapter:
        keys = load_file(run / "adapter" / "adapter.safetensors")
        assert {"modules_to_save.head.weight", "modules_to_save.head.bias"} <= set(keys)
    again = pipeline.evaluate(run, {"suite": "all"})
    assert again["id_accuracy"] == pytest.approx(m["id_accuracy"])
    assert again["ood"] == pytest.approx(m["ood"])
    if method == "largo":
        assert m["largo"]["steps_checked"] == 4 and m["largo"]["radius_violations"] == 0
        assert (run / "plots" / "largo_gamma_dw.png").is_file()


def test_legacy_adapter_folder_with_head_file_still_evaluates(tiny_cfg, tmp_path):
    """A run written before modules_to_save (head.safetensors beside an adapter without
    the head; e.g. a hub-cached run) evaluates to the same metrics."""
    run = tmp_path / "lora"
    m = pipeline.train(tiny_cfg("lora", eval={"wise_alphas": []}), run)
    folder = run / "adapter"
    tensors = load_file(folder / "adapter.safetensors")
    head = {k.split(".")[-1]: v for k, v in tensors.items() if k.startswith("modules_to_save.")}
    kept = {k: v for k, v in tensors.items() if not k.startswith("modules_to_save.")}
    save_file(kept, folder / "adapter.safetensors")
    save_file(head, folder / "head.safetensors")
    meta = json.loads((folder / "adapter_config.json").read_text())
    meta.pop("modules_to_save")
    meta["config"].pop("modules_to_save", None)
    (folder / "adapter_config.json").write_text(json.dumps(meta))
    again = pipeline.evaluate(run, {"suite": "id"})
    assert again["id_accuracy"] == pytest.approx(m["id_accuracy"])
    assert torch.equal(load_run(run).model.head.weight, head["weight"])


def test_head_copy_trains_at_head_lr(tiny_cfg):
    """With train_head the head's trainable copy (modules_to_save) is in the head_lr group
    and the original head stays frozen (it is what disable/WiSE-FT alpha 0 use)."""
    cfg = tiny_cfg("lora")
    built = pipeline.build_model(cfg, pipeline.resolve_data(cfg["data"]))
    prepare(built.model, MethodConfig(**cfg["adapter"]), built.targets)
    copy_ids = {id(p) for p in built.model.head.copies["default"].parameters()}
    assert not any(p.requires_grad for p in built.model.head.original.parameters())
    opt = OODModule(built.model, OptimConfig(lr=0.01, head_lr=0.5), 4, False).configure_optimizers()
    groups = opt["optimizer"].param_groups
    head = [g for g in groups if g["initial_lr"] == 0.5]
    assert len(head) == 1 and {id(p) for p in head[0]["params"]} == copy_ids


def test_largo_radius_holds_every_step(tiny_cfg, tmp_path):
    """A real Lightning run with a strict monitor: ||W_eff - W0||_F <= gamma_l after every step,
    while the constraint is active and the radii actually move."""
    cfg = tiny_cfg("largo", adapter={"hyper": {"gamma_rel": 1e-3, "mu": 1e-3}})
    desc = pipeline.resolve_data(cfg["data"])
    built = pipeline.build_model(cfg, desc)
    model = built.model
    prepare(model, MethodConfig(**cfg["adapter"]), built.targets)
    start = {n: float(m.gamma) for n, m in largo_layers(model)}
    run = RunFolder(tmp_path / "run")
    monitor = LargoMonitor(run.logs / "largo.csv", strict=True)
    opts = trainer_options({**cfg["trainer"], "max_steps": 8})
    trainer, _ = build_trainer(opts, run, [monitor])
    from torch.utils.data import DataLoader

    from lorakit.vision.ood.data import ImageFolderSet

    loader = DataLoader(
        ImageFolderSet(desc["id_train"], desc["classes"], 16), batch_size=8, shuffle=True
    )
    trainer.fit(OODModule(model, OptimConfig(lr=0.05), 8, full=False), loader)
    assert monitor.steps_checked == 8 and monitor.violations == []
    layers = largo_layers(model)
    active = [m for _, m in layers if float(m.update_norm()) > float(m.gamma)]
    assert active, "the constraint never became active: the test would not check the projection"
    assert any(float(m.gamma) != start[n] for n, m in layers), "radii never moved"
    rows = (run.logs / "largo.csv").read_text().splitlines()
    assert len(rows) == 1 + 8 * len(layers)


def test_longer_rerun_continues_from_last_checkpoint(tiny_cfg, tmp_path):
    out = tmp_path / "run"
    first = pipeline.train(tiny_cfg("lora", trainer={"max_steps": 2}), out)
    assert first["steps"] == 2 and (out / "checkpoints" / "last.ckpt").is_file()
    second = pipeline.train(tiny_cfg("lora", trainer={"max_steps": 4}), out)
    assert second["steps"] == 4 and second["resumed_from_step"] == 2
    with (out / "logs" / "metrics.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [0, 1, 2, 3]  # continued at step 2, and the first part's log is kept


def test_eval_suites_and_errors(tiny_cfg, tmp_path):
    out = tmp_path / "run"
    pipeline.train(tiny_cfg("linear_probe", eval={"wise_alphas": []}), out)
    assert set(pipeline.evaluate(out, {"suite": "night"})["ood"]) == {"night"}
    corr = pipeline.evaluate(out, {"suite": "blur"})
    written = json.loads((out / "eval" / "blur.json").read_text())  # the one layout
    assert written == json.loads((out / "eval_blur.json").read_text())  # the old name
    assert set(written["corruptions"]) == set(corr["corruptions"])
    assert (out / "eval" / "night.json").is_file()
    assert set(corr["corruptions"]) == {"defocus_blur", "glass_blur", "motion_blur", "zoom_blur"}
    with pytest.raises(ValueError, match="unknown suite"):
        pipeline.evaluate(out, {"suite": "nonsense"})
    with pytest.raises(ValueError, match="does not exist"):
        pipeline.train(
            tiny_cfg("largo", backbone={"checkpoint": str(tmp_path / "missing.pt")}),
            tmp_path / "bad",
        )
    with pytest.raises(ValueError, match="adapter.method"):
        pipeline.train(tiny_cfg("dora"), tmp_path / "bad2")
    assert torch.get_num_threads() >= 1


@pytest.fixture(scope="module")
def learn_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ood-learn")


@pytest.mark.parametrize("method", ["linear_probe", "full", "lora", "largo"])
def test_each_method_learns_above_chance(tiny_cfg, learn_root, method):
    """A briefly pretrained tiny ViT with a zero head (exactly chance: 0.25 on 4 classes)
    learns the ID task with every method: 20 steps reach >= 0.35 on 40 test images
    (measured: linear_probe 0.45, full 0.375, lora 0.45, largo 0.45)."""
    cfg = tiny_cfg(
        method,
        data={
            "root": str(learn_root / "task"),
            "shift": {"train_per_class": 12, "test_per_class": 10},
        },
        backbone={
            "checkpoint": str(learn_root / "pretrained.pt"),
            "pretrain_if_missing": True,
            "pretrain_steps": 150,
            "head_init": "zero",
        },
        optim={"lr": 0.01},
        eval={"wise_alphas": [0.0], "corruptions": []},
        trainer={"max_steps": 20, "checkpoint_every": 1000},
    )
    m = pipeline.train(cfg, learn_root / method)
    assert m["wise"][0]["id_accuracy"] == 0.25  # the starting point: the zero head
    assert m["id_accuracy"] >= 0.35, m["id_accuracy"]


@pytest.mark.parametrize("method", ["vera", "loldu"])
def test_registry_methods_train_and_score_on_another_draw(tiny_cfg, tmp_path, method):
    """Any registry method trains here (lorakit compare runs them all), and ``data.*``
    overrides point evaluate at another draw of the task (compare's validation split)."""
    cfg = tiny_cfg(method, eval={"corruptions": [], "wise_alphas": []})
    run = tmp_path / method
    m = pipeline.train(cfg, run)
    assert m["method"] == method and 0.0 <= m["ood_accuracy"] <= 1.0
    other = tmp_path / "val-draw"
    shift = {**cfg["data"]["shift"], "seed": 104729}
    val = pipeline.evaluate(run, {"data.root": str(other), "data.shift": shift, "suite": "ood"})
    assert (other / "task.json").is_file() and set(val["ood"]) == set(m["ood"])
    assert pipeline.evaluate(run, {"suite": "ood"})["id_accuracy"] == pytest.approx(m["id_accuracy"])
