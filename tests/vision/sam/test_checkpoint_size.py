"""A COD run of SAM vit_b at its real size (1024 px, random weights in Meta's file layout):
its checkpoint holds the adapter, the EMA teacher's copy of it and their optimizer state,
never the frozen SAM (357 MB) nor a second frozen copy for the teacher."""

import pytest
import torch

from lorakit.data.runs import load_config
from lorakit.vision.sam import pipeline

pytestmark = pytest.mark.slow  # one 1024-px step of SAM vit_b: about a minute on 2 CPU cores

MARGIN = 1 << 20  # Lightning's loops, callbacks, RNG states and the sampler position


def tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def test_vit_b_checkpoint_is_the_size_of_what_trains(tmp_path):
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"]()
    base = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sam.state_dict(), base)
    base_bytes = tensor_bytes(sam.state_dict())
    del sam
    sets = [
        f"data.cache={tmp_path / 'cache'}", "data.n_train=2", "data.n_test=1", "data.size=64",
        "backbone.name=vit_b", f"backbone.checkpoint={base}", "optim.batch_size=1",
        "trainer.max_steps=1", "trainer.checkpoint_every=1", "trainer.progress=false",
        "trainer.activation_checkpointing=true", "eval.progress=false", "eval.grid=1",
        "eval.zero_shot=false", "runtime.threads=2",
    ]
    run = tmp_path / "run"
    pipeline.train(load_config(None, sets, pipeline.DEFAULTS), run)
    ckpt_file = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=True)
    adapter = (run / "adapter" / "adapter.safetensors").stat().st_size
    optimizer = tensor_bytes(ckpt["optimizer_states"])
    size = ckpt_file.stat().st_size
    print(
        f"\nSAM vit_b COD checkpoint {size / 2**20:.2f} MB: adapter {adapter / 2**20:.2f} MB, "
        f"optimizer state {optimizer / 2**20:.2f} MB, frozen SAM {base_bytes / 2**20:.0f} MB"
    )
    assert optimizer > adapter  # AdamW: two moments per trained tensor
    assert size <= 2 * (adapter + optimizer) + MARGIN
    state = ckpt["state_dict"]
    frozen = [k for k in state if ".base." in k or "patch_embed" in k]  # a Host's W0, the stem
    assert not frozen, frozen[:3]
    assert {k.split(".", 1)[0] for k in state} == {"model", "teacher"}
    assert tensor_bytes(state) < base_bytes / 50
