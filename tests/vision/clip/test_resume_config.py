"""Re-running into a run folder under another config is refused before anything is written."""

import pytest

from lorakit.data.runs import RunFolder, check_same_config
from lorakit.vision.clip.pipeline import train


def test_a_changed_rank_or_lr_is_refused_and_nothing_is_rewritten(tmp_path, run_cfg):
    out = tmp_path / "run"
    train(run_cfg("trainer.max_steps=4", "trainer.checkpoint_every=2"), out)
    saved = (out / "config.yaml").read_text()
    adapter = (out / "adapter" / "adapter.safetensors").read_bytes()
    for change, key in (("adapter.r=3", "adapter.r"), ("optim.lr=0.5", "optim.lr")):
        with pytest.raises(ValueError, match="started with another config") as e:
            train(run_cfg("trainer.max_steps=4", "trainer.checkpoint_every=2", change), out)
        assert key in str(e.value) and "\n" not in str(e.value)
        assert (out / "config.yaml").read_text() == saved
        assert (out / "adapter" / "adapter.safetensors").read_bytes() == adapter
    # the same config resumes (a finished run: nothing to do); resume=false starts over
    train(run_cfg("trainer.max_steps=4", "trainer.checkpoint_every=2"), out)
    train(run_cfg("trainer.max_steps=4", "trainer.checkpoint_every=2", "optim.lr=0.5",
                  "trainer.resume=false"), out)
    assert "lr: 0.5" in (out / "config.yaml").read_text()


def test_check_same_config_names_nested_keys_and_ignores_resume(tmp_path):
    check_same_config({"trainer": {"resume": True}}, {"trainer": {"resume": False}}, tmp_path)
    with pytest.raises(ValueError, match=r"optim.lr \(0.01 -> 0.5\)"):
        check_same_config({"optim": {"lr": 0.01}}, {"optim": {"lr": 0.5}}, tmp_path)
    run = RunFolder(tmp_path / "r")
    run.write_config({"a": {"b": 1}, "trainer": {}})
    with pytest.raises(ValueError, match=r"a.b \(1 -> 2\)"):
        run.write_config({"a": {"b": 2}, "trainer": {}})
    run.write_config({"a": {"b": 2}, "trainer": {"resume": False}})
