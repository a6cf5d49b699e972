"""LoRA-Squeeze (``core/methods/lora_squeeze.py``) pinned where mutation testing (``bash
.ci/mutate core/methods/lora_squeeze.py``) found it untested: the config limits at their
edges (``target_r`` in ``[0, r]``, ``anneal_start >= 0``, ``anneal_steps >= 1``)."""

import pytest

from lorakit.core import make_config


def test_limits_at_their_edges():
    for ok in ({"target_r": 0}, {"target_r": 8, "r": 8}, {"anneal_start": 0},
               {"anneal_start": 5}, {"anneal_steps": 1}):
        make_config("lora_squeeze", **ok)
    for bad in ({"target_r": -1}, {"target_r": 9, "r": 8}, {"target_r": 2.0}):
        with pytest.raises(ValueError, match="target_r must be an integer"):
            make_config("lora_squeeze", **bad)
    for bad in ({"anneal_start": -1}, {"anneal_steps": 0}):
        with pytest.raises(ValueError, match="anneal_start must be >= 0"):
            make_config("lora_squeeze", **bad)
