"""S2-LoRA (``core/methods/s2_lora.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/s2_lora.py``) found it untested: which layers share one ``A``/``B`` pair (same
flat shape, same kernel) and the config limits."""

import pytest
from torch import nn

from lorakit.core import inject, make_config, methods


class _Mixed(nn.Module):
    """A 3x3 conv, a 1x1 conv and a Linear whose flat weights are all 4 x 18."""

    def __init__(self):
        super().__init__()
        self.k3 = nn.Conv2d(2, 4, 3)
        self.k3b = nn.Conv2d(2, 4, 3)
        self.k1 = nn.Conv2d(18, 4, 1)
        self.lin = nn.Linear(18, 4)


def test_layers_share_a_pair_only_with_the_same_shape_and_kernel():
    model = _Mixed()
    inject(model, make_config("s2_lora", r=3, targets=("k3", "k3b", "k1", "lin")))
    ms = methods(model)
    pairs = {id(m.shared) for m in ms}
    # the two 3x3 convs share one pair; the 1x1 conv and the Linear (flat 4 x 18, no kernel)
    # share another: two pairs of r * (18 + 4) plus r coefficients per layer
    assert len(pairs) == 2
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 2 * 3 * (18 + 4) + 4 * 3
    shapes = sorted((m.ops.kernel, id(m.shared)) for m in ms)
    k1_pairs = {pid for k, pid in shapes if k == (1, 1)}
    k3_pairs = {pid for k, pid in shapes if k == (3, 3)}
    assert len(k1_pairs) == 1 and len(k3_pairs) == 1 and k1_pairs != k3_pairs


@pytest.mark.parametrize("field", ["beta", "prox_threshold", "prox_lr"])
def test_negative_limits_are_rejected_and_zero_is_accepted(field):
    for bad in (-0.5, -2.0):
        with pytest.raises(ValueError, match="must be >= 0"):
            make_config("s2_lora", **{field: bad})
    make_config("s2_lora", **{field: 0.0})
