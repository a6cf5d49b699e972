"""Typed config sections: unknown keys and ill-typed values are one line, numeric strings
become numbers, and the light config modules' copies of heavy constants stay equal."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from lorakit.data.sections import check_sections, typed_section


@dataclass
class Demo:
    lr: float = 1e-3
    steps: int | None = 10
    name: str = "x"
    flag: bool = True
    ranks: list[int] = field(default_factory=list)
    pair: tuple[float, float] = (0.0, 1.0)
    either: int | str = 1


def test_values_are_checked_against_the_annotations():
    got = typed_section(Demo, {"lr": "1e-3", "steps": 4.0, "name": 32, "either": "auto"}, "s")
    assert (got.lr, got.steps, got.name, got.either) == (1e-3, 4, 32, "auto")
    assert typed_section(Demo, {"steps": None}, "s").steps is None
    for key, value, message in (
        ("lr", "fast", "s.lr must be a number, got 'fast'"),
        ("steps", 2.5, "s.steps must be an integer or null, got 2.5"),
        ("flag", "yes", "s.flag must be true or false, got 'yes'"),
        ("ranks", 3, "s.ranks must be a list, got 3"),
        ("name", [1], "s.name must be a string, got [1]"),
        ("lr", True, "s.lr must be a number, got True"),
    ):
        with pytest.raises(ValueError) as e:
            typed_section(Demo, {key: value}, "s")
        assert str(e.value) == message
    with pytest.raises(ValueError, match=r"s: unknown key\(s\) \['bogus'\]"):
        typed_section(Demo, {"bogus": 1}, "s")
    with pytest.raises(ValueError, match="s must be a mapping"):
        typed_section(Demo, [1], "s")


def test_check_sections_checks_plain_sections_by_their_default_keys():
    defaults = {"demo": {"lr": 1}, "plain": {"a": 1}, "free": {"a": 1}}
    sections = {"demo": Demo, "free": None}
    assert check_sections({"plain": {"a": 2}, "free": {"b": 3}}, sections, defaults) == {}
    with pytest.raises(ValueError, match=r"plain: unknown key\(s\) \['b'\]"):
        check_sections({"plain": {"b": 2}}, sections, defaults)
    with pytest.raises(ValueError, match=r"unknown config section\(s\) \['other'\]"):
        check_sections({"other": {}}, sections, defaults)


def test_light_copies_of_heavy_constants_stay_equal():
    from lorakit.core.quant.options import QUANT_DEFAULTS
    from lorakit.data.corruptions import SEVERITIES
    from lorakit.speech.whisper import config as asr
    from lorakit.vision.ood import config as ood
    from lorakit.vision.sam import config as cod
    from lorakit.vision.sam.distill import ARCHS

    assert asr.QUANT_DEFAULTS == QUANT_DEFAULTS
    assert cod.DISTILL_ARCHS == tuple(ARCHS)
    assert ood.EvalConfig().severities == list(SEVERITIES)


def test_old_import_paths_still_give_the_same_objects():
    from lorakit.speech.whisper import config as asr
    from lorakit.speech.whisper.pipeline import DEFAULTS as asr_defaults
    from lorakit.vision.clip import config as clip
    from lorakit.vision.clip.pipeline import DEFAULTS as clip_defaults
    from lorakit.vision.ood.pipeline import DEFAULTS as ood_defaults
    from lorakit.vision.sam.model import AdapterSpec
    from lorakit.vision.sam.pipeline import DEFAULTS as cod_defaults

    assert clip_defaults is clip.DEFAULTS and asr_defaults is asr.DEFAULTS
    assert ood_defaults["adapter"]["method"] == "largo"
    assert cod_defaults["adapter"] == {**cod_defaults["adapter"], "method": AdapterSpec().method}
