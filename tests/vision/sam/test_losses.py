import math

import torch
from torch import nn

from lorakit.vision.sam.losses import (
    consistency,
    ema_update,
    gradient_aware_contrastive,
    gradient_magnitude,
    partial_bce,
)


def test_partial_bce_ignores_unknown_pixels():
    labels = torch.tensor([[[1, 2], [0, 0]]])
    logits = torch.tensor([[[[0.0, 0.0], [50.0, -50.0]]]])  # unknown pixels would cost a lot
    assert math.isclose(partial_bce(logits, labels).item(), math.log(2), rel_tol=1e-6)
    logits = torch.tensor([[[[2.0, 0.0], [0.0, 0.0]]]])
    want = (math.log1p(math.exp(-2.0)) + math.log(2)) / 2
    assert math.isclose(partial_bce(logits, labels).item(), want, rel_tol=1e-6)


def test_partial_bce_balanced_weighs_classes_equally():
    labels = torch.tensor([[[1, 2, 2, 2]]])
    logits = torch.tensor([[[[0.0, 10.0, 10.0, 10.0]]]])
    bg = math.log1p(math.exp(10.0))
    assert math.isclose(
        partial_bce(logits, labels).item(), (math.log(2) + 3 * bg) / 4, rel_tol=1e-5
    )
    assert math.isclose(
        partial_bce(logits, labels, balanced=True).item(), (math.log(2) + bg) / 2, rel_tol=1e-5
    )


def test_contrastive_known_value_on_separated_features():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :2] = 1
    labels[0, 2:] = 2
    feats = torch.zeros(1, 2, 4, 4)
    feats[0, 0, :2] = 1.0  # foreground pixels point along e1
    feats[0, 1, 2:] = 1.0  # background along e2
    flat = torch.full((1, 3, 4, 4), 100.0)  # no edges: every weight is 1
    tau = 0.5
    want = math.log1p(math.exp(-1 / tau))  # -log softmax: own prototype sim 1, other 0
    got = gradient_aware_contrastive(feats, labels, flat, tau=tau)
    assert math.isclose(got.item(), want, rel_tol=1e-5)
    swapped = gradient_aware_contrastive(feats.flip(1), labels, flat, tau=tau)
    assert math.isclose(swapped.item(), want, rel_tol=1e-5)  # prototypes follow the labels
    mixed = torch.ones(1, 2, 4, 4)  # indistinguishable pixels: chance level
    assert math.isclose(
        gradient_aware_contrastive(mixed, labels, flat, tau=tau).item(), math.log(2), rel_tol=1e-5
    )


def test_contrastive_weights_edge_pixels_more():
    img = torch.zeros(1, 3, 8, 8)
    img[..., 4:] = 255.0  # a vertical edge between columns 3 and 4
    g = gradient_magnitude(img)[0]
    assert g[:, 3:5].min() > 0.9 and g[:, :2].max() == 0
    labels = torch.full((1, 8, 8), 2, dtype=torch.long)
    labels[0, :, 3] = 1
    labels[0, 0, 0] = 1
    feats = torch.randn(1, 4, 8, 8)
    plain = gradient_aware_contrastive(feats, labels, img, beta=0.0)
    weighted = gradient_aware_contrastive(feats, labels, img, beta=10.0)
    assert not torch.isclose(plain, weighted)


def test_contrastive_skips_images_without_both_labels():
    labels = torch.ones(1, 4, 4, dtype=torch.long)
    feats = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = gradient_aware_contrastive(feats, labels, torch.zeros(1, 3, 4, 4))
    assert loss.item() == 0.0
    loss.backward()


def test_consistency_and_ema():
    s = torch.zeros(1, 1, 2, 2, requires_grad=True)
    t = torch.full((1, 1, 2, 2), 50.0, requires_grad=True)
    loss = consistency(s, t)
    assert math.isclose(loss.item(), 0.25, rel_tol=1e-6)
    loss.backward()
    assert t.grad is None and s.grad is not None
    student, teacher = nn.Linear(2, 2), nn.Linear(2, 2)
    student.bias.requires_grad_(False)
    with torch.no_grad():
        student.weight.fill_(1.0)
        teacher.weight.fill_(0.0)
        teacher.bias.fill_(3.0)
    ema_update(teacher, student, decay=0.75)
    assert torch.allclose(teacher.weight, torch.full((2, 2), 0.25))
    assert torch.allclose(teacher.bias, torch.full((2,), 3.0))  # frozen tensors are not averaged
