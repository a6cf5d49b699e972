"""Fast checks of the apps' validation and glue (no browser, no training)."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from lorakit.apps.cli.demo import check_host
from lorakit.apps.web import asr as app_asr
from lorakit.apps.web import clip as app_clip
from lorakit.apps.web import cod as app_cod
from lorakit.apps.web.common import Limits, check_audio, check_image, guarded
from lorakit.apps.web.prebuilt import BuildStatus, fingerprint, is_ready, profile, resolve


def png(path, size=(40, 30), colour=(200, 30, 30)):
    Image.new("RGB", size, colour).save(path)
    return path


def test_check_image_accepts_a_png_and_returns_rgb(tmp_path):
    img = check_image(str(png(tmp_path / "a.png")))
    assert img.mode == "RGB" and img.size == (40, 30)


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("notes.txt", lambda p: p.write_text("hi"), "not a supported image type"),
        ("fake.png", lambda p: p.write_text("not an image"), "not a readable image"),
        ("tiny.png", lambda p: png(p, (8, 8)), "too small"),
        ("wide.png", lambda p: png(p, (5000, 20)), "too large"),
    ],
)
def test_check_image_rejects_bad_uploads_by_name(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(ValueError, match=message) as err:
        check_image(str(path))
    assert name in str(err.value)


def test_check_image_byte_limit_and_missing_upload(tmp_path):
    path = png(tmp_path / "a.png")
    with pytest.raises(ValueError, match="over the 0 MB limit"):
        check_image(str(path), Limits(image_bytes=10))
    with pytest.raises(ValueError, match="no image given"):
        check_image(None)


def test_check_audio_resamples_and_limits_duration(tmp_path):
    t = np.arange(8000 * 2) / 8000
    path = tmp_path / "tone.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 8000)
    wave = check_audio(str(path))
    assert abs(wave.numel() - 32000) < 50  # 2 s at 16 kHz
    with pytest.raises(ValueError, match="over the limit"):
        check_audio(str(path), Limits(audio_seconds=1.0))
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    with pytest.raises(ValueError, match="empty"):
        check_audio(str(silent))
    with pytest.raises(ValueError, match="not a supported audio type"):
        check_audio(str(png(tmp_path / "x.png")))


def test_guarded_turns_failures_into_page_messages():
    def bad_input():
        raise ValueError("field x is wrong")

    def crash():
        raise RuntimeError("boom\ndetails")

    def gen():
        yield 1
        raise KeyError("k")

    with pytest.raises(gr.Error, match="field x is wrong"):
        guarded(bad_input)()
    with pytest.raises(gr.Error, match="still running.*RuntimeError: boom") as err:
        guarded(crash)()
    assert "details" not in str(err.value)
    g = guarded(gen)()
    assert next(g) == 1
    with pytest.raises(gr.Error, match="KeyError"):
        next(g)


def test_binding_beyond_localhost_needs_the_flag():
    check_host("127.0.0.1", False)
    check_host("0.0.0.0", True)
    with pytest.raises(ValueError, match="--share-lan"):
        check_host("0.0.0.0", False)


def test_demo_cli_refuses_lan_without_flag():
    from typer.testing import CliRunner

    from lorakit.apps.cli.commands import app

    result = CliRunner().invoke(app, ["demo", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "--share-lan" in result.output


def test_clip_collect_classes_validates_slots(tmp_path):
    a, b = str(png(tmp_path / "a.png")), str(png(tmp_path / "b.png"))
    ok = app_clip.collect_classes(["cat", "dog", "", ""], [[a], [b], None, None])
    assert list(ok) == ["cat", "dog"]
    with pytest.raises(ValueError, match="at least two classes"):
        app_clip.collect_classes(["cat", "", "", ""], [[a], None, None, None])
    with pytest.raises(ValueError, match="used twice"):
        app_clip.collect_classes(["cat", "Cat", "", ""], [[a], [b], None, None])
    with pytest.raises(ValueError, match="has images but no name"):
        app_clip.collect_classes(["cat", "", "", ""], [[a], [b], None, None])
    with pytest.raises(ValueError, match="has no images"):
        app_clip.collect_classes(["cat", "dog", "", ""], [[a], None, None, None])


def test_cod_prompt_helpers():
    assert app_cod.parse_box("1, 2, 30, 40", (64, 64)) == [1, 2, 30, 40]
    with pytest.raises(ValueError, match="four numbers"):
        app_cod.parse_box("1 2 3", (64, 64))
    with pytest.raises(ValueError, match="must satisfy"):
        app_cod.parse_box("10 10 5 20", (64, 64))
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[1, 1] = (255, 0, 0)
    rgb[6, 6] = (0, 0, 255)
    s = app_cod.scribble_from(rgb)
    assert s[1, 1] == 1 and s[6, 6] == 2 and s.sum() == 3
    scene = app_cod.generated_scene(0, size=64)
    assert scene.gt.shape == (64, 64) and set(np.unique(scene.scribble)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="click the object"):
        app_cod.make_prompt(scene, "points", "", 128)
    prompt = app_cod.make_prompt(scene, "box", "", 128)
    assert prompt.box.shape == (4,) and float(prompt.box.max()) < 128


def test_asr_word_diff_marks_only_words_that_differ_from_the_reference():
    ref = "The cat sat down today."
    assert app_asr.word_diff("the cat sat down today", ref) == [
        (w + " ", None) for w in "the cat sat down today".split()
    ]
    marks = app_asr.word_diff("the bat sat very down", ref)
    assert marks == [
        ("the ", None),
        ("bat ", app_asr.WRONG),
        ("sat ", None),
        ("very ", app_asr.EXTRA),
        ("down ", None),
        ("[today.] ", app_asr.MISSED),
    ]
    assert set(app_asr.MARK_COLORS) == {app_asr.WRONG, app_asr.EXTRA, app_asr.MISSED}


def test_pending_runs_are_listed_once(tmp_path, caplog):
    import logging

    from lorakit.apps.web.prebuilt import RunSpec, ensure_runs, mark_pending

    specs = [RunSpec("nope-run", "nope", "t", "m", False)]  # an unknown pipeline: unavailable
    st = BuildStatus()
    mark_pending(st, tmp_path, specs)
    with caplog.at_level(logging.INFO, logger="lorakit.apps.web.prebuilt"):
        ensure_runs(tmp_path, specs, st)
    assert sum("pending" in r.getMessage() for r in caplog.records) == 0
    assert st.get("nope-run")["state"] in ("failed", "unavailable")


def test_tab_banner_says_building_then_clears(tmp_path):
    from lorakit.apps.web.common import DemoContext

    st = BuildStatus()
    ctx = DemoContext(tmp_path, profile("tiny", tmp_path), st)
    st.set("cod-fora", "building", "training", 0.25, steps_known=True)
    ready, settled, text = ctx.readiness(["cod-fora"])
    assert not ready and not settled
    assert "Building the pre-made run `cod-fora` (25 %)" in text and "enables itself" in text
    st.set("cod-fora", "ready", "built")
    assert ctx.readiness(["cod-fora"]) == (True, True, "")
    st.set("ood-lora", "failed", "RuntimeError: boom")
    ready, settled, text = ctx.readiness(["ood-lora"])
    assert not ready and settled and "failed:** RuntimeError: boom" in text


def test_prebuilt_profiles_resolve_and_cache_by_fingerprint(tmp_path):
    specs = profile("tiny", tmp_path)
    assert {s.pipeline for s in specs} == {"clip", "cod", "asr", "ood"}
    assert [s.real_weights for s in profile("demo", tmp_path) if s.pipeline == "asr"] == [True]
    cfg = resolve(specs[0])
    folder = tmp_path / specs[0].key
    assert not is_ready(folder, cfg)
    folder.mkdir()
    (folder / "metrics.json").write_text("{}")
    (folder / "prebuilt.json").write_text(f'{{"fingerprint": "{fingerprint(cfg)}"}}')
    assert is_ready(folder, cfg)
    cfg["trainer"]["max_steps"] += 1
    assert not is_ready(folder, cfg)
    with pytest.raises(ValueError, match="unknown pre-made run profile"):
        profile("huge", tmp_path)


def test_build_status_is_a_snapshot():
    st = BuildStatus()
    st.set("a", "building", "step 1", 0.5)
    snap = st.snapshot()
    st.set("a", "ready", "done")
    assert snap["a"]["fraction"] == 0.5 and st.get("a")["fraction"] == 1.0


def test_tab_request_before_its_run_is_built_says_so(tmp_path):
    from lorakit.apps.web.common import DemoContext

    specs = profile("tiny", tmp_path)
    st = BuildStatus()
    ctx = DemoContext(tmp_path, specs, st)
    st.set("cod-fora", "building", "training", 0.25, steps_known=True)
    with pytest.raises(ValueError, match=r"cod-fora is being built \(25%\)"):
        ctx.require(str(ctx.run_path("cod-fora")), "cod-fora", "cod")
    st.set("cod-fora", "failed", "RuntimeError: out of memory")
    with pytest.raises(ValueError, match="failed: RuntimeError"):
        ctx.require(str(ctx.run_path("cod-fora")), "cod-fora", "cod")
    with pytest.raises(ValueError, match="config.yaml is missing"):
        ctx.require(str(tmp_path / "elsewhere"), "cod-fora", "cod")


def test_theme_fonts_hold_every_letter():
    """Each font file the page loads has A-Z, a-z, 0-9 (a partial file drew "SᴀM")."""
    import re
    import string
    from pathlib import Path

    from fontTools.ttLib import TTFont

    from lorakit.apps.web.common import theme

    static = Path(gr.__file__).parent / "templates" / "frontend" / "static"
    font = theme()._font[0]
    css = font.stylesheet()["css"]
    files = [static / u.split("static/", 1)[1] for u in re.findall(r"url\('([^']+)'\)", css)]
    assert files
    for f in files:
        cmap = TTFont(f).getBestCmap()
        missing = [c for c in string.ascii_letters + string.digits if ord(c) not in cmap]
        assert not missing, f"{f.name} lacks {missing[:8]}"


def test_ood_app_predicts_on_read_only_images_without_warnings():
    import threading
    import warnings
    from types import SimpleNamespace

    import torch

    from lorakit.apps.web import ood as app_ood

    img = np.asarray(Image.new("RGB", (20, 20), (10, 200, 30)))  # read-only, as PIL gives
    assert not img.flags.writeable
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    run = SimpleNamespace(model=model, classes=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = app_ood.prepare(img, 8, "gaussian_noise", 2)
        probs = app_ood.predict(run, threading.Lock(), np.asarray(Image.fromarray(x)))
    assert set(probs) == {"a", "b"} and abs(sum(probs.values()) - 1) < 1e-5


def test_asr_synthesize_writes_a_playable_wave():
    """The 'speak' button: espeak-ng speech as a 1-D 16 kHz wave that save_wave can write."""
    wave = app_asr.synthesize("The cat sat on the mat.", 0)
    assert wave.dim() == 1 and wave.numel() > 16000 // 4
    data, rate = sf.read(app_asr.save_wave(wave, "test"))
    assert rate == 16000 and len(data) == wave.numel()


def test_clip_describe_lists_the_classes_the_run_knows(tmp_path):
    (tmp_path / "metrics.json").write_text(
        '{"method": "lora", "shots": 4, "accuracy": 0.9, "zero_shot_accuracy": 0.5}'
    )
    text = app_clip.describe(tmp_path, ["red circle", "blue square"])
    assert "lora, 4 shots, test accuracy 90.0% (zero-shot CLIP 50.0%)" in text
    assert "**Classes it knows** (2): `red circle`, `blue square`" in text
    assert "Classes" not in app_clip.describe(tmp_path)
