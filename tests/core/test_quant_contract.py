"""The shared adapter contract over a quantized base: every method on 4-bit Linear hosts."""

import pytest

from lorakit.core.contract import TINY_QUANT, check_contract, supported_quant_pairs

PAIRS = supported_quant_pairs()


@pytest.mark.parametrize(("method", "zoo"), PAIRS, ids=[f"{m}-{z}" for m, z in PAIRS])
def test_contract_on_quantized_host(method, zoo, tmp_path):
    check_contract(method, zoo, workdir=str(tmp_path), quant=TINY_QUANT)


def test_quantized_pairs_cover_methods():
    from lorakit.core import list_methods

    covered = {m for m, _ in PAIRS}
    assert covered == set(list_methods()) - {"gorp"}  # GORP trains the (frozen) base weights
    assert ("lora", "fused_qkv") in PAIRS
