"""The apps load runs only from under their runs root (issue 22): a valid run elsewhere, a
missing path and a symlink out of the root all get the same one line."""

import pytest

from lorakit.apps.web import asr as app_asr
from lorakit.apps.web import clip as app_clip
from lorakit.apps.web import cod as app_cod
from lorakit.apps.web import ood as app_ood
from lorakit.apps.web.common import DemoContext
from lorakit.apps.web.prebuilt import BuildStatus, profile

MESSAGE = "not offered by this server"


def _fake_run(folder, pipeline):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"pipeline: {pipeline}\n")
    (folder / "metrics.json").write_text("{}")
    return folder


def _loaders(ctx):
    return {
        "clip": lambda f: app_clip.get_run(f, ctx.roots),
        "cod": lambda f: app_cod.get_models(ctx, f),
        "ood": lambda f: app_ood.get_run(ctx, f, "ood-lora"),
        "asr": lambda f: app_asr.get_run(ctx, f),
    }


@pytest.mark.parametrize("pipeline", ["clip", "cod", "ood", "asr"])
def test_a_run_outside_the_runs_root_is_refused_by_every_app(tmp_path, pipeline):
    root = tmp_path / "runs"
    root.mkdir()
    ctx = DemoContext(root, profile("tiny", root), BuildStatus())
    load = _loaders(ctx)[pipeline]
    outside = _fake_run(tmp_path / "elsewhere" / pipeline, pipeline)
    (root / "link").symlink_to(outside)
    messages = set()
    for folder in (outside, tmp_path / "no" / "such" / "dir", root / "link", f"{root}/../elsewhere/{pipeline}"):
        with pytest.raises(ValueError, match=MESSAGE) as e:
            load(str(folder))
        messages.add(str(e.value))
    assert len(messages) == 1  # existing or not: the same line, no path in it
    assert str(tmp_path) not in messages.pop()
    assert sorted(p.name for p in outside.iterdir()) == ["config.yaml", "metrics.json"]


def test_served_paths_never_serve_checkpoints_or_adapters(tmp_path):
    from gradio.utils import is_allowed_file

    from lorakit.apps.web.common import served_paths

    root = tmp_path / "runs"
    (root / "mine" / "plots").mkdir(parents=True)
    kw = served_paths(root, ["clip-block_lora"])
    allowed, blocked = kw["allowed_paths"], kw["blocked_paths"]

    def ok(p):
        return is_allowed_file(p, blocked, allowed, [])[0]

    assert ok(root / "mine" / "plots" / "loss.png")
    assert ok(root / "data" / "clip-example" / "a.png")
    for run in ("mine", "clip-block_lora"):  # an existing run and a pre-made one not built yet
        assert not ok(root / run / "checkpoints" / "last.ckpt")
        assert not ok(root / run / "adapter" / "adapter.safetensors")


def test_clip_app_keeps_only_its_newest_training_folders(tmp_path):
    import os

    from lorakit.apps.web.clip import prune_sessions

    for i in range(5):
        d = tmp_path / f"clip-{i}"
        (d / "run").mkdir(parents=True)
        os.utime(d, (1000 + i, 1000 + i))
    (tmp_path / "audio").mkdir()
    prune_sessions(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "clip-3", "clip-4"]
