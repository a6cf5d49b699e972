"""The continual baselines' own pieces on a tiny model: O-LoRA's penalty and freezing,
merged LoRA's end of task, full fine-tuning's trainable set, GORP's carried basis."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lorakit.core import make_config
from lorakit.core.adapters import adapter_parameters
from lorakit.data.continual import Method


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))


def builder(method, hyper):
    return make_config(method, targets=(r"\d",), **hyper)


def test_olora_penalty_is_the_sum_of_squared_cross_products():
    model, m = net(), Method("olora", {"r": 2, "lambda_orth": 0.3}, builder)
    m.begin_task(model, 0)
    assert m.penalty(model) == 0.0  # nothing earlier to be orthogonal to
    m.begin_task(model, 1)
    old = adapter_parameters(model, "task0")
    assert old and not any(p.requires_grad for p in old)
    assert all(p.requires_grad for p in adapter_parameters(model, "task1"))
    want = 0.0
    for layer in (model[0], model[2]):
        a0, a1 = layer.adapters["task0"]["weight"].A, layer.adapters["task1"]["weight"].A
        want += float((a1 @ a0.T).pow(2).sum().detach())
    got = m.penalty(model)
    assert float(got) == pytest.approx(0.3 * want)
    got.backward()  # the gradient reaches the new A only
    assert model[0].adapters["task1"]["weight"].A.grad is not None
    assert model[0].adapters["task0"]["weight"].A.grad is None


def test_lora_merge_moves_the_delta_into_the_weights():
    model, m = net(), Method("lora_merge", {"r": 2}, builder)
    m.begin_task(model, 0)
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.adapters["default"]["weight"].B.normal_()
    x = torch.randn(3, 6)
    before, w0 = model(x), model[0].base.weight.clone()
    m.end_task(model, None)
    assert torch.allclose(model(x), before, atol=1e-6)  # same function, delta now in W
    assert not torch.equal(model[0].base.weight, w0)
    assert float(model[0].adapters["default"]["weight"].B.abs().sum()) == 0.0


def test_full_trains_the_target_weights_only():
    model, m = net(), Method("full", {"r": 2}, builder)
    m.begin_task(model, 0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"0.weight", "2.weight"}


def test_gorp_carries_its_task_basis_to_the_next_task():
    model, m = net(), Method("gorp", {"r": 1, "r_g": 2, "T": 1}, builder)
    m.begin_task(model, 0)
    opt = m.optimizer(model, 1e-2, 0.0, None)
    for _ in range(3):
        model(torch.randn(4, 6)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
    carried = m.end_task(model, opt)
    m.begin_task(model, 1)
    nxt = m.optimizer(model, 5e-3, 0.0, carried)
    qs = [st["q"] for st in nxt.state.values() if "q" in st]
    assert qs and all(q.shape[1] > 0 for q in qs)  # the basis of task 0 is there
    assert all(g["lr"] == 5e-3 for g in nxt.param_groups)  # but the new task's lr


def test_clip_full_fine_tuning_trains_the_text_tower_too():
    from lorakit.vision.clip.build import BackboneConfig, load_backbone
    from lorakit.vision.clip.continual import TrainableTextClassifier

    bb = load_backbone(BackboneConfig())
    model = TrainableTextClassifier(bb.model, bb.tokenizer, ["red circle", "blue star"], ("a {}.",))
    m = Method("full", {"r": 2}, lambda meth, h: make_config(
        meth, targets=(r"clip\.transformer\.resblocks\.\d+\.attn",), **h))
    m.begin_task(model, 0)
    model(torch.randn(2, 3, bb.image_size, bb.image_size)).sum().backward()
    w = model.clip.transformer.resblocks[0].attn.in_proj_weight
    assert w.requires_grad and w.grad is not None and float(w.grad.abs().sum()) > 0


def test_drs_lora_trains_its_core_method_and_merges_at_the_end_of_a_task():
    model, m = net(), Method("drs_lora", {"r": 2, "sparsity": 0.5, "w_init": 0.5}, builder)
    m.begin_task(model, 0)
    slot = model[0].adapters["default"]["weight"]
    assert type(slot).__name__ == "DRSLoRA" and float(slot.w[0]) == 0.5
    opt = m.optimizer(model, 1e-2, 0.1, None)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay[id(slot.w)] == 0.0 and decay[id(slot.A)] == 0.1  # no decay on w
    with torch.no_grad():
        slot.B.normal_()
    x = torch.randn(3, 6)
    before, w0 = model(x), model[0].base.weight.clone()
    assert m.end_task(model, opt) is None
    assert torch.allclose(model(x), before, atol=1e-6)  # the update moved into W
    assert not torch.equal(model[0].base.weight, w0)
    assert float(slot.B.detach().abs().sum()) == 0.0 and int(slot.closed_rank) == 2
