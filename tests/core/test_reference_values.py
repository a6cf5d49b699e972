"""Stored reference values (torchtune style): every method, from a fixed init, after three
steps of the training protocol, must give the outputs stored in
``tests/core/reference/outputs.safetensors``. A silent change of any method's math (or of
its init, hooks or optimizer) fails here.

Regenerate after an intended change, and say why in the commit:
``.venv/bin/python tests/core/test_reference_values.py``
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lorakit.core import inject, list_methods, protocol
from lorakit.core.contract import perturb, supported_pairs, tiny_config
from lorakit.core.zoo import build

FILE = Path(__file__).parent / "reference" / "outputs.safetensors"


def _host(method: str) -> str:
    zoos = [z for m, z in supported_pairs() if m == method]
    return "linear" if "linear" in zoos else zoos[0]


def _trained_output(method: str) -> torch.Tensor:
    torch.manual_seed(0)
    model, x, targets, slices = build(_host(method))
    inject(model, tiny_config(method, targets, slices))
    perturb(model)
    model.train()
    loss_fn = lambda m, b: m(b).pow(2).mean()  # noqa: E731
    protocol.prepare(model, [x], loss_fn)
    opt = protocol.method_optimizer(model, lr=1e-2) or torch.optim.AdamW(
        protocol.param_groups(model, 1e-2, 0.01)
    )
    for _ in range(3):
        opt.zero_grad()
        loss_fn(model, x).backward()
        protocol.before_step(model, opt)
        opt.step()
        protocol.after_step(model, opt)
    protocol.finish(model, opt)
    model.eval()
    with torch.no_grad():
        return model(x).detach().float().contiguous()


def write_reference_values() -> None:
    FILE.parent.mkdir(parents=True, exist_ok=True)
    save_file({m: _trained_output(m) for m in list_methods()}, str(FILE))
    print(f"wrote {FILE}")


@pytest.mark.parametrize("method", list_methods())
def test_method_matches_its_stored_reference(method):
    stored = load_file(str(FILE))
    assert method in stored, f"no stored reference for {method}: regenerate (module docstring)"
    torch.testing.assert_close(_trained_output(method), stored[method], rtol=1e-4, atol=1e-5)


if __name__ == "__main__":
    write_reference_values()
