"""``lorakit eval`` writes ``eval/<suite>.json`` (the pipelines' own tests check each one
against the old file); a suite name that is no plain file name is refused in one line."""

from __future__ import annotations

import json

import pytest

from lorakit.data.results import eval_file, write_eval


def test_eval_file_layout_and_round_trip(tmp_path):
    path = write_eval(tmp_path, {"accuracy": 0.5}, "ood")
    assert path == tmp_path / "eval" / "ood.json" == eval_file(tmp_path, "ood")
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert write_eval(tmp_path, {"x": 1}) == tmp_path / "eval" / "all.json"


@pytest.mark.parametrize("suite", ["../metrics", "a/b", "", ".hidden", "x..y"])
def test_suite_names_that_would_leave_eval_are_refused(tmp_path, suite):
    with pytest.raises(ValueError, match="eval suite name") as err:
        write_eval(tmp_path, {}, suite)
    assert "\n" not in str(err.value) and not (tmp_path / "eval").exists()
