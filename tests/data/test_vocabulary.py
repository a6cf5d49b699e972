"""One config vocabulary: asr's ``model``/``train`` and ood's ``method`` (``name``) sections
are read as ``backbone``/``optim`` and ``adapter`` (``method``) with a one-line notice, from
a file, from ``--set`` and from a stored run; the new names are the pipelines' own."""

from __future__ import annotations

import pytest
import yaml

from lorakit.data import vocabulary
from lorakit.data.runs import RunFolder
from lorakit.data.vocabulary import Rename, load_pipeline_config, upgrade_config
from lorakit.speech.whisper import pipeline as asr
from lorakit.vision.ood import pipeline as ood

NEW = {"backbone", "data", "adapter", "optim", "trainer", "eval"}


@pytest.fixture(autouse=True)
def _fresh_notices(monkeypatch):
    monkeypatch.setattr(vocabulary, "_told", set())


@pytest.mark.parametrize("mod", [asr, ood], ids=["asr", "ood"])
def test_pipelines_speak_the_one_vocabulary(mod):
    assert NEW <= set(mod.DEFAULTS)
    assert not {r.old for r in mod.RENAMED} & set(mod.DEFAULTS)


def test_old_asr_sections_in_a_file_and_in_set_are_read_as_the_new(tmp_path, capsys):
    path = tmp_path / "asr.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "tiny-random"}, "train": {"lr": 0.5}}))
    cfg = load_pipeline_config(path, ["train.batch_size=3"], asr.DEFAULTS, asr.RENAMED)
    assert "model" not in cfg and "train" not in cfg
    assert cfg["backbone"] == {**asr.DEFAULTS["backbone"], "name": "tiny-random"}
    assert cfg["optim"]["lr"] == 0.5 and cfg["optim"]["batch_size"] == 3
    assert cfg["optim"]["weight_decay"] == asr.DEFAULTS["optim"]["weight_decay"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2  # one line per old name, once each
    assert "'model' is now 'backbone'" in err[0] and "'train' is now 'optim'" in err[1]


def test_old_ood_method_section_moves_its_name_to_adapter_method(capsys):
    cfg = upgrade_config({"method": {"name": "lora", "r": 2}, "adapter": {"r": 8}}, ood.RENAMED)
    assert cfg == {"adapter": {"method": "lora", "r": 2}}  # the old section's values win
    opts, mcfg, _, _ = ood._check(upgrade_config({**ood.DEFAULTS, "method": {"name": "lora"}},
                                                 ood.RENAMED))
    assert mcfg.method == "lora" and "method" not in ood.DEFAULTS
    assert capsys.readouterr().err.count("\n") == 1
    over = vocabulary.upgrade_override("method.name=full", ood.RENAMED)
    assert over == "adapter.method=full"
    assert vocabulary.upgrade_override("trainer.seed=1", ood.RENAMED) == "trainer.seed=1"


def test_a_run_started_under_the_old_names_is_resumed_not_refused(tmp_path):
    run = RunFolder(tmp_path / "run")
    old = {"model": {"name": "tiny-random"}, "train": {"lr": 0.5}, "trainer": {"seed": 0}}
    run.write_config(old)  # what the asr pipeline wrote before the renames
    new = upgrade_config(old, asr.RENAMED)
    with pytest.raises(ValueError):
        run.write_config(new)  # the resume check alone refuses the renamed config
    vocabulary.upgrade_run_folder(run.path, asr.RENAMED)
    assert run.read_config() == new
    run.write_config(new)  # now the same config: the run resumes
    vocabulary.upgrade_run_folder(tmp_path / "none", asr.RENAMED)  # no run yet: nothing


def test_unknown_and_malformed_sections_are_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"bogus": {}}))
    with pytest.raises(ValueError, match=r"unknown config section\(s\) \['bogus'\]"):
        load_pipeline_config(path, [], asr.DEFAULTS, asr.RENAMED)
    with pytest.raises(ValueError, match="'train' must be a mapping"):
        upgrade_config({"train": 3}, asr.RENAMED)
    assert Rename("a", "b", {"x": "y"}).describe() == "a -> b, a.x -> b.y"
