"""OOD at real size: the architecture sets the input size; the config has a runtime section."""

import pytest
import torch

from lorakit.data.runs import load_config
from lorakit.vision.ood import pipeline
from lorakit.vision.ood.build import BackboneConfig, build_backbone

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def vit_b_16_file(tmp_path_factory):
    """A torchvision ``vit_b_16`` state dict (random weights) in torchvision's format."""
    import torchvision

    path = tmp_path_factory.mktemp("tv") / "vit_b_16.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.vit_b_16(weights=None).state_dict(), path)
    return str(path)


def test_vit_b_16_takes_224_from_the_architecture(vit_b_16_file):
    built = build_backbone(
        BackboneConfig(kind="torchvision", arch="vit_b_16", checkpoint=vit_b_16_file), CLASSES
    )
    assert built.image_size == 224
    with torch.no_grad():
        assert built.model(torch.rand(1, 3, 224, 224)).shape == (1, 3)


def test_a_conflicting_image_size_is_one_line(vit_b_16_file):
    cfg = BackboneConfig(kind="torchvision", arch="vit_b_16", checkpoint=vit_b_16_file)
    cfg.image_size = 32
    with pytest.raises(ValueError, match=r"backbone.image_size 32 conflicts with vit_b_16") as e:
        build_backbone(cfg, CLASSES)
    assert "\n" not in str(e.value) and "224" in str(e.value)
    cfg.image_size = 224  # agreeing with the architecture is fine
    assert build_backbone(cfg, CLASSES).image_size == 224


def test_cnn_default_224_and_tiny_default_32(tmp_path):
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    cfg = BackboneConfig(kind="torchvision", arch="resnet18", checkpoint=str(path))
    assert build_backbone(cfg, CLASSES).image_size == 224
    cfg.image_size = 64  # a CNN takes any size: the user's wins
    assert build_backbone(cfg, CLASSES).image_size == 64
    assert BackboneConfig().image_size == 32  # the tiny ViT keeps its tiny default


def test_config_accepts_runtime_section(tmp_path, monkeypatch):
    cfg_file = tmp_path / "ood.yaml"
    cfg_file.write_text("runtime:\n  threads: 1\n")
    cfg = load_config(cfg_file, ["runtime.threads=1"], pipeline.DEFAULTS)
    assert cfg["runtime"] == {"threads": 1}
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    pipeline.set_threads(cfg)
    assert seen == [1]


def test_activation_checkpointing_flag_reaches_the_model(tiny_cfg, tmp_path):
    """``trainer.activation_checkpointing: true`` wraps the backbone's blocks in a pipeline
    run, and LARGO trains to the same adapter as without it (same seed, same steps)."""
    import lightning as L
    from safetensors.torch import load_file

    from lorakit.core.checkpointing import is_checkpointed

    class Count(L.Callback):
        wrapped = None

        def on_train_batch_start(self, trainer, pl_module, batch, i):
            Count.wrapped = sum(is_checkpointed(m) for m in pl_module.modules())

    trainer = {"max_steps": 2, "checkpoint_every": 2}
    fast = {"corruptions": [], "wise_alphas": []}
    adapters = {}
    for flag in (False, True):
        Count.wrapped = None
        cfg = tiny_cfg("largo", trainer={**trainer, "activation_checkpointing": flag}, eval=fast)
        pipeline.train(cfg, tmp_path / str(flag), callbacks=[Count()])
        assert Count.wrapped == (2 if flag else 0)  # the tiny ViT's two encoder layers
        adapters[flag] = load_file(tmp_path / str(flag) / "adapter" / "adapter.safetensors")
    assert set(adapters[True]) == set(adapters[False])
    for k, v in adapters[False].items():
        torch.testing.assert_close(adapters[True][k], v, rtol=1e-4, atol=1e-6, msg=k)


def test_resnet_stages_are_checkpointed_in_a_pipeline_run(tiny_cfg, tmp_path):
    """``arch: resnet18`` with the flag: its four stages are wrapped, and LoRA trains to the
    same adapter as without it (BatchNorm frozen in eval mode, as the pipeline keeps it)."""
    import lightning as L
    import torchvision
    from safetensors.torch import load_file

    from lorakit.core.checkpointing import is_checkpointed

    weights = tmp_path / "r18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)

    class Names(L.Callback):
        wrapped = None

        def on_train_batch_start(self, trainer, pl_module, batch, i):
            Names.wrapped = [n for n, m in pl_module.model.named_modules() if is_checkpointed(m)]

    backbone = {"kind": "torchvision", "arch": "resnet18", "checkpoint": str(weights)}
    fast = {"corruptions": [], "wise_alphas": []}
    adapters = {}
    for flag in (False, True):
        trainer = {"max_steps": 2, "checkpoint_every": 2, "activation_checkpointing": flag}
        cfg = tiny_cfg("lora", backbone=backbone, trainer=trainer, eval=fast)
        cfg["backbone"]["image_size"] = 32
        pipeline.train(cfg, tmp_path / str(flag), callbacks=[Names()])
        stages = [f"features.layer{i}" for i in range(1, 5)]
        assert Names.wrapped == (stages if flag else [])
        adapters[flag] = load_file(tmp_path / str(flag) / "adapter" / "adapter.safetensors")
    assert set(adapters[True]) == set(adapters[False])
    for k, v in adapters[False].items():
        torch.testing.assert_close(adapters[True][k], v, rtol=1e-4, atol=1e-6, msg=k)
