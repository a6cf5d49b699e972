"""Re-running into a run folder under another config is refused before anything is written.
(Through `lorakit train`, every pipeline: tests/apps/test_run_safety.py.)"""

import pytest

from lorakit.data.runs import RunFolder, check_same_config


def test_check_same_config_names_nested_keys_and_ignores_resume(tmp_path):
    check_same_config({"trainer": {"resume": True}}, {"trainer": {"resume": False}}, tmp_path)
    with pytest.raises(ValueError, match=r"optim.lr \(0.01 -> 0.5\)"):
        check_same_config({"optim": {"lr": 0.01}}, {"optim": {"lr": 0.5}}, tmp_path)
    run = RunFolder(tmp_path / "r")
    run.write_config({"a": {"b": 1}, "trainer": {}})
    with pytest.raises(ValueError, match=r"a.b \(1 -> 2\)"):
        run.write_config({"a": {"b": 2}, "trainer": {}})
    run.write_config({"a": {"b": 2}, "trainer": {"resume": False}})
