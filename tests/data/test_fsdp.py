"""``--strategy fsdp`` (``lorakit.data.runtime.fsdp``): the pieces a 2-process run needs,
checked fast. (The 2-process CPU run against one process is in
tests/vision/clip/test_reliability.py, ``-m reliability``.)"""

import subprocess
import sys

import pytest
import torch
from torch import nn

from lorakit.core import inject, make_config
from lorakit.core.zoo import build
from lorakit.data.runs import RunFolder
from lorakit.data.runtime import build_trainer, trainer_options
from lorakit.data.runtime.fsdp import AdapterFSDP, _block_policy, hooked_methods


def tiny_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                             hidden_dim=32, mlp_dim=64, num_classes=3)


def test_fsdp_is_lorakits_strategy_on_the_cpu(tmp_path):
    """Lightning alone refuses ``fsdp`` without a GPU; the runtime's own strategy does not."""
    opts = trainer_options({"strategy": "fsdp", "devices": 2, "accelerator": "cpu",
                            "progress": False})
    trainer, _ = build_trainer(opts, RunFolder(tmp_path))
    assert isinstance(trainer.strategy, AdapterFSDP)
    assert trainer.strategy.kwargs["use_orig_params"] is True


def test_one_process_is_refused_in_one_line():
    with pytest.raises(ValueError, match="fsdp shards the model across processes") as e:
        trainer_options({"strategy": "fsdp", "devices": 1})
    assert "\n" not in str(e.value)
    trainer_options({"strategy": "fsdp", "devices": 2, "accelerator": "cpu"})


def test_each_backbone_block_is_its_own_unit():
    vit = tiny_vit()
    blocks = [m for m in vit.modules() if _block_policy(m, False, 0)]
    assert len(blocks) == 2 and all(type(b).__name__ == "EncoderBlock" for b in blocks)
    assert not _block_policy(vit.heads, False, 0) and _block_policy(vit, True, 0)


@pytest.mark.parametrize("method", ["sora", "largo", "lora_sb"])
def test_methods_with_training_hooks_are_refused_in_one_line(method):
    model, _, targets, _ = build("linear")
    inject(model, make_config(method, r=2, targets=targets))
    with pytest.raises(ValueError) as e:
        AdapterFSDP()._setup_model(model)
    assert "\n" not in str(e.value) and f"fsdp: {method} runs training hooks" in str(e.value)


@pytest.mark.parametrize("method", ["lora", "comp_lora", "vera"])
def test_methods_without_hooks_pass(method):
    model, _, targets, _ = build("linear")
    inject(model, make_config(method, r=2, targets=targets, **({"k": 2} if method == "comp_lora" else {})))
    assert hooked_methods(model) == []


def test_a_trainable_scalar_is_refused():
    model = nn.Linear(4, 4)
    model.gate = nn.Parameter(torch.tensor(1.0))
    with pytest.raises(ValueError, match="fsdp: FSDP cannot shard the trainable scalar gate"):
        AdapterFSDP()._setup_model(model)


WORLD_OF_ONE = r"""
import os, torch, torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from lorakit.core import inject, make_config
from lorakit.data.runtime.fsdp import AdapterFSDP, unshard
from torchvision.models.vision_transformer import VisionTransformer
def tiny_vit():
    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                             hidden_dim=32, mlp_dim=64, num_classes=3)
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29587")
dist.init_process_group("gloo", rank=0, world_size=1)
def adapted():
    vit = tiny_vit()
    inject(vit, make_config("lora", r=2, targets=("mlp.0", "mlp.3")))
    with torch.no_grad():
        for p in vit.parameters():
            if p.requires_grad: p.normal_(0, 0.1)
    return vit
x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
plain, wrapped = adapted(), adapted()
strategy = AdapterFSDP()
strategy.parallel_devices = [torch.device("cpu")]
root = strategy._setup_model(wrapped)
units = sum(isinstance(m, FSDP) for m in root.modules())
for m in (plain, root):
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    m(x).pow(2).mean().backward(); opt.step()
sharded = {n: tuple(p.shape) for n, p in wrapped.named_parameters() if p.requires_grad}
back = unshard(root, strategy._params)
assert back is wrapped and not any(isinstance(m, FSDP) for m in back.modules())
with torch.no_grad():
    err = float((back(x) - plain(x)).abs().max())
want = dict(plain.named_parameters())
print("units", units, "err", err, "same_shapes", all(
    p.shape == want[n].shape for n, p in back.named_parameters()) and len(want) == len(list(back.parameters())))
"""


def test_one_rank_wraps_blocks_trains_and_comes_back_whole(tmp_path):
    """One gloo process in a child (no process group in the test process): three FSDP
    units (root + 2 blocks); after a step and ``unshard`` the plain model computes what the
    same step without FSDP gives. (One rank does not shard: the 2-process reliability test
    gathers real shards.)"""
    proc = subprocess.run([sys.executable, "-c", WORLD_OF_ONE], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    words = proc.stdout.split()
    assert words[words.index("units") + 1] == "3", proc.stdout
    assert float(words[words.index("err") + 1]) < 1e-6, proc.stdout
    assert words[words.index("same_shapes") + 1] == "True", proc.stdout
