"""Activation checkpointing: adapter gradients (and LARGO's radius signal) are exactly those
of the unwrapped model, on the tiny configs of every real backbone architecture."""

import copy

import pytest
import torch

from lorakit.core import inject
from lorakit.core.adapters import named_methods
from lorakit.core.checkpointing import checkpoint_blocks, is_checkpointed, uncheckpoint_blocks
from lorakit.core.registry import make_config


def _clip():
    from lorakit.vision.clip.build import BackboneConfig, load_backbone

    bb = load_backbone(BackboneConfig(name="lorakit-tiny-vit", pretrained=None))
    model, tok = bb.model, bb.tokenizer(["a photo of a cat", "a dog"])
    x = torch.rand(2, 3, bb.image_size, bb.image_size)
    return model, lambda m: (m.encode_image(x) * m.encode_text(tok)).sum(), 4  # 2 + 2 blocks


def _sam():
    from lorakit.vision.sam.build import BackboneConfig, random_tiny

    enc = random_tiny(BackboneConfig(img_size=64, window=2, depth=2)).image_encoder
    x = torch.rand(1, 3, 64, 64)
    return enc, lambda m: m(x).square().mean(), 2


def _tv_vit():
    from lorakit.vision.ood.build import BackboneConfig
    from lorakit.vision.ood.tiny import tiny_vit

    net = tiny_vit(BackboneConfig(image_size=16, patch_size=8, width=32, depth=2, heads=2), 3)
    with torch.no_grad():
        for p in net.heads.parameters():  # torchvision zero-inits the head: no gradient flows
            p.normal_()
    x = torch.rand(2, 3, 16, 16)
    return net, lambda m: m(x).logsumexp(-1).sum(), 2


def _whisper():
    from lorakit.speech.whisper.build import tiny_whisper

    model = tiny_whisper()
    mel = torch.randn(1, 80, 2 * model.dims.n_audio_ctx)
    tokens = torch.tensor([[50257, 50362, 400, 401, 402]])
    return model, lambda m: m(mel, tokens).logsumexp(-1).sum(), 4  # 2 encoder + 2 decoder


def _resnet():
    import torchvision

    net = torchvision.models.resnet18(num_classes=3)
    x = torch.rand(2, 3, 32, 32)
    return net, lambda m: m(x).logsumexp(-1).sum(), 4  # layer1 .. layer4


BACKBONES = {
    "open_clip": _clip,
    "sam": _sam,
    "torchvision_vit": _tv_vit,
    "whisper": _whisper,
    "resnet": _resnet,
}
# (method, hyper, the layers it adapts: a name suffix)
CASES = {
    "open_clip": [("lora", {}, "mlp.c_fc"), ("largo", {}, "mlp.c_proj")],
    "sam": [("lora", {}, "attn.qkv"), ("fora", {}, "mlp.lin1")],
    "torchvision_vit": [("lora", {}, "mlp.0"), ("largo", {}, "mlp.3")],
    "whisper": [("lora", {}, "attn.query"), ("largo", {}, "mlp.0")],
    "resnet": [("lora", {}, "conv2"), ("largo", {}, "0.conv1")],  # the OOD pipeline's targets
}


def _adapted(kind: str, method: str, hyper: dict, suffix: str):
    torch.manual_seed(0)
    model, loss_fn, n_blocks = BACKBONES[kind]()
    model.eval()
    names = [n for n, m in model.named_modules() if n.endswith(suffix) and hasattr(m, "weight")]
    assert names, suffix
    inject(model, make_config(method, r=2, alpha=2, **hyper), names=names)
    torch.manual_seed(1)
    with torch.no_grad():  # an update away from the start, so every path carries gradient
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    for _, _, m in named_methods(model):
        if hasattr(m, "gamma"):
            m.test_perturb()  # a LARGO radius that binds: its tensor hook accumulates
    return model, loss_fn, n_blocks


def _grads(model, loss_fn) -> tuple[dict, list]:
    model.zero_grad(set_to_none=True)
    for _, _, m in named_methods(model):
        if hasattr(m, "g_acc"):
            m.g_acc.zero_()
            m.n_active.zero_()
    loss_fn(model).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    radius = [(m.g_acc.clone(), m.n_active.clone()) for _, _, m in named_methods(model)
              if hasattr(m, "g_acc")]
    return grads, radius


@pytest.mark.parametrize(
    "kind,case", [(k, i) for k in BACKBONES for i in range(len(CASES[k]))],
    ids=lambda v: str(v),
)
def test_gradients_equal_with_checkpointing(kind, case):
    method, hyper, suffix = CASES[kind][case]
    model, loss_fn, n_blocks = _adapted(kind, method, hyper, suffix)
    plain, plain_radius = _grads(model, loss_fn)
    assert checkpoint_blocks(model) == n_blocks
    assert checkpoint_blocks(model) == n_blocks  # idempotent: wrapped once
    ckpt, ckpt_radius = _grads(model, loss_fn)
    assert plain and set(ckpt) == set(plain)
    for name, g in plain.items():
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(ckpt[name], g, rtol=1e-5, atol=1e-7, msg=name)
    assert len(ckpt_radius) == len(plain_radius)
    for (g1, n1), (g0, n0) in zip(ckpt_radius, plain_radius, strict=True):
        assert n0 > 0  # the radius was active: the hook fired
        torch.testing.assert_close(n1, n0)  # once per forward, not again in the recompute
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-9)
    if method == "largo":
        assert plain_radius


def test_resnet_in_training_mode_counts_each_batch_once_in_batchnorm():
    """A ResNet fine-tuned whole keeps BatchNorm in training mode: with its stages
    checkpointed, the gradients and the running statistics after one step equal the
    plain model's (the recomputation does not update them a second time)."""
    model, loss_fn, n = _adapted("resnet", "lora", {}, "conv2")
    model.train()
    start = copy.deepcopy(model.state_dict())
    plain, _ = _grads(model, loss_fn)
    plain_stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    model.load_state_dict(start)
    assert checkpoint_blocks(model) == n
    assert [name for name, m in model.named_modules() if is_checkpointed(m)] == [
        "layer1", "layer2", "layer3", "layer4"
    ]
    ckpt, _ = _grads(model, loss_fn)
    for name, g in plain.items():
        torch.testing.assert_close(ckpt[name], g, rtol=1e-5, atol=1e-7, msg=name)
    stats = model.state_dict()
    moved = [k for k in plain_stats if "running_mean" in k and not torch.equal(plain_stats[k], start[k])]
    assert len(moved) >= 16  # every stage's norms saw the batch
    for k, v in plain_stats.items():
        torch.testing.assert_close(stats[k], v, rtol=1e-6, atol=1e-7, msg=k)


def test_wrapping_keeps_names_and_deepcopies_to_the_copy():
    model, loss_fn, n = _adapted("torchvision_vit", "lora", {}, "mlp.0")
    keys = list(model.state_dict())
    checkpoint_blocks(model)
    assert list(model.state_dict()) == keys
    teacher = copy.deepcopy(model)
    blocks = [m for m in teacher.modules() if is_checkpointed(m)]
    assert len(blocks) == n
    assert all(b.forward.__self__ is b for b in blocks)  # the copy runs its own weights
    with torch.no_grad():
        for p in teacher.parameters():
            p.zero_()
    assert loss_fn(model).abs() > 0 and loss_fn(teacher) != loss_fn(model)
    uncheckpoint_blocks(model)
    assert not any(is_checkpointed(m) for m in model.modules())


def _saved_bytes(model, loss_fn) -> int:
    """Bytes of the tensors autograd keeps for backward from outside any checkpoint."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model)
    loss.backward()
    return total


def test_wrapped_blocks_keep_no_activations():
    model, loss_fn, _ = _adapted("torchvision_vit", "lora", {}, "mlp.0")
    plain = _saved_bytes(model, loss_fn)
    checkpoint_blocks(model)
    assert _saved_bytes(model, loss_fn) < 0.25 * plain


def test_the_flag_is_validated_and_may_change_on_resume():
    from lorakit.data.runs import check_same_config
    from lorakit.data.runtime import trainer_options

    assert trainer_options({"activation_checkpointing": True}).activation_checkpointing is True
    with pytest.raises(ValueError, match="trainer.activation_checkpointing must be true or false"):
        trainer_options({"activation_checkpointing": "yes"})
    # a run saved before the key existed, resumed with it switched on
    check_same_config({"trainer": {"seed": 0}}, {"trainer": {"seed": 0, "activation_checkpointing": True}}, "run")


def test_a_model_without_known_blocks_is_refused_in_one_line():
    import lightning as L

    from lorakit.data.runtime.checkpointing import ActivationCheckpointing

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())

        def training_step(self, batch, i):
            return self.net(batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(max_steps=1, callbacks=[ActivationCheckpointing()], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    with pytest.raises(ValueError, match="trainer.activation_checkpointing: this model has none") as e:
        trainer.fit(Tiny(), torch.utils.data.DataLoader(torch.rand(4, 2), batch_size=2))
    assert "\n" not in str(e.value)
