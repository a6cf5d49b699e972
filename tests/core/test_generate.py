"""ICM-LoRA-style generation: the adapter <-> vector layout, the ELBO against a hand-written
Gaussian KL, and a toy family whose right adapter is a known function of the condition."""

import pytest
import torch
from safetensors.torch import load_file

from lorakit.core import inject, load_adapter, make_config, save_adapter, zoo
from lorakit.core.generate import (
    CVAE,
    AdapterLayout,
    elbo,
    embed_description,
    fit_generator,
)
from lorakit.core.io import WEIGHTS_NAME

HELD_OUT = 0.6
BANK_T = [round(-1 + 0.25 * i, 2) for i in range(9)]  # -1 .. 1; 0.6 is not among them


def _lora_model():
    model, x, _, _ = zoo.build("linear", seed=0)
    torch.manual_seed(3)  # one A initialisation shared by the whole bank
    inject(model, make_config("lora", r=2, targets=("fc1",)))
    return model, x


def _directions():
    g = torch.Generator().manual_seed(7)
    return torch.randn(64, 2, generator=g) * 0.4, torch.randn(64, 2, generator=g) * 0.4


def _set_task(model, t):
    """The right adapter of task ``t``: LoRA ``B(t) = t B1 + t^2 B2`` on fc1, A shared."""
    b1, b2 = _directions()
    with torch.no_grad():
        model.fc1.adapters["default"]["weight"].B.copy_(t * b1 + t * t * b2)


def _desc(t):
    return f"regression task with shift {t:.2f}"


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    root = tmp_path_factory.mktemp("bank")
    model, x = _lora_model()
    folders = []
    for t in BANK_T:
        _set_task(model, t)
        folders.append(save_adapter(model, root / f"t{t}"))
    gen = fit_generator(folders, [_desc(t) for t in BANK_T], steps=400, lr=5e-3, hidden=64, seed=0)
    return root, folders, gen, x


def _task_loss(folder, t, x):
    """MSE between the model with ``folder``'s adapter (none: ``None``) and task ``t``."""
    teacher, _ = _lora_model()
    _set_task(teacher, t)
    student, _ = zoo.build("linear", seed=0)[:2]
    if folder is not None:
        load_adapter(student, folder)
    with torch.no_grad():
        return (student(x) - teacher(x)).pow(2).mean().item()


def test_flatten_round_trip_is_exact(bank, tmp_path):
    _, folders, _, _ = bank
    layout = AdapterLayout.from_folder(folders[0])  # the template: another task's folder
    tensors = load_file(str(folders[3] / WEIGHTS_NAME))
    vec = layout.flatten(tensors)
    assert vec.shape == (layout.size,) == (2 * 32 + 64 * 2,)
    back = layout.unflatten(vec)
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    out = layout.write(vec, tmp_path / "copy")
    again = load_file(str(out / WEIGHTS_NAME))
    assert set(again) == set(tensors)
    assert all(torch.equal(again[k], tensors[k]) for k in tensors)
    assert torch.equal(layout.read(out), vec)


def test_elbo_matches_hand_written_gaussian_kl():
    torch.manual_seed(1)
    cvae = CVAE(dim=10, cond=4, latent=3, hidden=16)
    theta, c, eps = torch.randn(5, 10), torch.randn(5, 4), torch.randn(5, 3)
    loss, recon, kl = elbo(cvae, theta, c, beta=0.3, eps=eps)
    h = cvae.enc(torch.cat([theta, c], 1))
    mu, logvar = h[:, :3], h[:, 3:]
    sigma = torch.exp(0.5 * logvar)
    # KL(N(mu, sigma^2) || N(0, 1)) = log(1 / sigma) + (sigma^2 + mu^2) / 2 - 1/2, per dim
    kl_hand = (torch.log(1 / sigma) + (sigma**2 + mu**2) / 2 - 0.5).sum(1).mean()
    dec = cvae.dec(torch.cat([mu + sigma * eps, c], 1))
    recon_hand = ((dec - theta) ** 2).sum(1).mean()
    torch.testing.assert_close(kl, kl_hand)
    torch.testing.assert_close(recon, recon_hand)
    torch.testing.assert_close(loss, recon_hand + 0.3 * kl_hand)
    assert kl_hand > 0.01  # a non-trivial posterior, so a dropped KL would show


def test_generated_adapter_loads_and_changes_output(bank, tmp_path):
    _, _, gen, x = bank
    folder = gen.generate(_desc(HELD_OUT), tmp_path / "gen")
    model, _, _, _ = zoo.build("linear", seed=0)
    with torch.no_grad():
        before = model(x)
        load_adapter(model, folder)
        after = model(x)
    assert (after - before).abs().max() > 1e-3


def test_generator_beats_no_adapter_and_bank_mean_on_held_out_condition(bank, tmp_path):
    _, folders, gen, x = bank
    gen_loss = _task_loss(gen.generate(_desc(HELD_OUT), tmp_path / "gen"), HELD_OUT, x)
    none_loss = _task_loss(None, HELD_OUT, x)
    mean_vec = torch.stack([gen.layout.read(f) for f in folders]).mean(0)
    mean_loss = _task_loss(gen.layout.write(mean_vec, tmp_path / "mean"), HELD_OUT, x)
    assert gen_loss < 0.25 * none_loss
    assert gen_loss < 0.5 * mean_loss


def test_generator_reproduces_bank_adapter_better_than_bank_mean(bank):
    _, folders, gen, _ = bank
    theta = torch.stack([gen.layout.read(f) for f in folders])
    mean = theta.mean(0)
    for t, target in zip(BANK_T, theta, strict=True):
        err = (gen.vector(_desc(t)) - target).norm()
        assert err < 0.2 * (mean - target).norm(), t


def test_condition_embedding_separates_numbers_and_rejects_tiny_dim():
    a, b = embed_description("shift 0.50"), embed_description("shift 0.75")
    assert a.shape == (32,) and not torch.equal(a, b)
    assert torch.equal(a[:14], b[:14])  # same words, different number features
    with pytest.raises(ValueError, match="too small"):
        embed_description("x", dim=4)


def test_bank_with_another_layout_is_one_clear_error(bank, tmp_path):
    _, folders, _, _ = bank
    model, _, _, _ = zoo.build("linear", seed=0)
    inject(model, make_config("lora", r=3, targets=("fc1",)))
    odd = save_adapter(model, tmp_path / "r3")
    with pytest.raises(ValueError, match=r"r3/adapter.safetensors: tensor .* has shape"):
        fit_generator([folders[0], odd], ["a 1", "a 2"], steps=1)
    with pytest.raises(ValueError, match="at least 2 folders"):
        fit_generator([folders[0]], ["a 1"], steps=1)


def test_saved_generator_generates_the_same_adapter_and_needs_no_bank(bank, tmp_path):
    from lorakit.core.generate import GENERATOR_FILE, load_generator, save_generator

    _, _, gen, _ = bank
    saved = save_generator(gen, tmp_path / "gen", {"note": "toy"})
    assert not list(saved.rglob("*.pt")) and not list(saved.rglob("*.pkl"))
    again, meta = load_generator(saved)
    assert meta == {"note": "toy"}
    assert again.layout.template == saved / "template"  # self-contained: no path into the bank
    assert torch.equal(again.vector(_desc(HELD_OUT)), gen.vector(_desc(HELD_OUT)))
    out = again.generate(_desc(HELD_OUT), tmp_path / "out")
    assert torch.equal(gen.layout.read(out), gen.vector(_desc(HELD_OUT)))
    (saved / GENERATOR_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable lorakit generator"):
        load_generator(saved)
    with pytest.raises(ValueError, match="no generator at"):
        load_generator(tmp_path / "nothing")
