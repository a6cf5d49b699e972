"""The shared adapter contract: every method on every host it supports."""

import pytest

from lorakit.core import list_methods
from lorakit.core.contract import check_contract, supported_pairs

PAIRS = supported_pairs()


@pytest.mark.parametrize(("method", "zoo"), PAIRS, ids=[f"{m}-{z}" for m, z in PAIRS])
def test_contract(method, zoo, tmp_path):
    check_contract(method, zoo, workdir=str(tmp_path))


def test_every_method_has_hosts_covered():
    covered = {m for m, _ in PAIRS}
    assert covered == set(list_methods())
    assert {"lora", "block_lora", "comp_lora", "fora", "s2_lora", "largo"} <= set(list_methods())
    # every method runs on all five host kinds (six zoo models: MHA both batch layouts)
    assert sum(1 for m, z in PAIRS if m == "fora") == 6
    assert sum(1 for m, z in PAIRS if m == "lora") == 6
