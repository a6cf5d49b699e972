"""LoRA-GGPO (``core/methods/lora_ggpo.py``) pinned where mutation testing (``bash .ci/mutate
core/methods/lora_ggpo.py``) found it untested: the limits of ``rho_g`` and ``rho_w`` (zero
switches one term of the perturbation off and is allowed; negative is refused)."""

import pytest

from lorakit.core import make_config


@pytest.mark.parametrize("field", ["rho_g", "rho_w"])
def test_rho_limits(field):
    make_config("lora_ggpo", **{field: 0.0})
    for bad in (-0.01, -1.0):
        with pytest.raises(ValueError, match="must be >= 0"):
            make_config("lora_ggpo", **{field: bad})
    assert getattr(make_config("lora_ggpo"), field) == 0.05
