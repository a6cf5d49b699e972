"""The pre-made demo runs shipped with lorakit: the hub installs them instead of training,
the apps load them without pretraining anything, and rebuilding gives the shipped files.

The rebuild tests of the runs that take minutes (camouflage, OOD) or about an hour (ASR: the
benchmark's full child-speech recipe on real Whisper tiny.en) are in the slow group:
.venv/bin/python -m pytest -m slow tests/apps/test_premade.py
"""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest
import torch
import yaml
from PIL import Image

from lorakit.apps.web import premade
from lorakit.apps.web.phases import BuildPhases
from lorakit.apps.web.prebuilt import BuildStatus, build_one, pipeline_module, profile, resolve
from lorakit.vision.clip.predict import classify

MANIFEST = premade.read_manifest()
SHIPPED = sorted(MANIFEST["runs"])
FAST = {"clip-block_lora"}  # rebuilt in the default suite (seconds); the rest: slow
# rebuilt byte for byte by `premade build` (twice on one machine, one thread); Whisper's
# 9-minute decoding was not rebuilt twice: its metrics are held to premade.TOLERANCE
BIT_EXACT = {"clip-block_lora", "cod-fora", "ood-lora", "ood-largo"}


def no_training(monkeypatch) -> None:
    """Every pipeline's train, the OOD ViT's and the tiny SAM's pretraining raise."""
    from lorakit.vision.ood import pretrain as ood_pretrain
    from lorakit.vision.sam import pretrain as sam_pretrain

    def boom(*args, **kwargs):
        raise AssertionError("trained although a shipped run was there")

    for name in ("clip", "cod", "ood", "asr"):
        monkeypatch.setattr(pipeline_module(name), "train", boom)
    monkeypatch.setattr(ood_pretrain, "pretrain_tiny", boom)
    monkeypatch.setattr(sam_pretrain, "pretrain", boom)


def test_the_vision_runs_are_shipped_as_safetensors_and_small(tmp_path):
    demo = {s.key for s in profile("demo", tmp_path)}
    assert demo - {"asr-s2_lora"} <= set(SHIPPED), SHIPPED
    files = [p for p in premade.SHIPPED.rglob("*") if p.is_file()]
    # tensors only as safetensors: nothing a torch.load / pickle would run
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".ckpt", ".pkl", ".bin")]
    assert not [p for p in files if "checkpoints" in p.parts]
    assert sum(p.stat().st_size for p in files) < 20 * 2**20
    for key in SHIPPED:
        assert {
            "adapter/adapter_config.json",
            "metrics.json",
            "config.yaml",
            "prebuilt.json",
        } <= set(MANIFEST["runs"][key]["files"])


def test_the_hub_is_ready_from_the_shipped_runs_without_training(tmp_path, monkeypatch, caplog):
    from lorakit.apps.web import clip, cod, ood
    from lorakit.apps.web.hub import _headline, make_context

    no_training(monkeypatch)
    t0 = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="lorakit.apps.web.prebuilt"):
        ctx = make_context(tmp_path, "demo", background=False, keys=set(SHIPPED))
    took = time.perf_counter() - t0
    terminal = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert terminal == [f"pre-made run {k}: ready shipped with lorakit" for k in ctx.specs]
    rows = ctx.status.snapshot()
    assert {k: r["state"] for k, r in rows.items()} == dict.fromkeys(SHIPPED, "ready"), rows
    assert {r["message"] for r in rows.values()} == {"shipped with lorakit"}
    assert took < 60, took
    for key in SHIPPED:
        marker = json.loads((tmp_path / key / "prebuilt.json").read_text())
        assert marker["source"] == "shipped" and marker["path"] == str(tmp_path / key)
        assert "@RUNS@" not in (tmp_path / key / "config.yaml").read_text()
        assert _headline(ctx.specs[key].pipeline, str(tmp_path / key))  # the Overview's numbers
    # the apps load them as they are (no pretraining: it would raise)
    run = clip.load_run(tmp_path / "clip-block_lora")
    images = sorted((tmp_path / "clip-block_lora" / "data" / "test").rglob("*.png"))
    right = 0
    for image in images:
        adapted, _ = classify(run, Image.open(image).convert("RGB"))
        right += max(adapted, key=adapted.get) == image.parent.name.replace("_", " ")
    shipped = json.loads((tmp_path / "clip-block_lora" / "metrics.json").read_text())
    print(f"CLIP app on the shipped run: {right}/{len(images)}, metrics {shipped['accuracy']}")
    assert right / len(images) > shipped["zero_shot_accuracy"] + 0.2
    adapted_sam, base_sam = cod.load_models(tmp_path / "cod-fora")
    assert adapted_sam is not None and base_sam is not None
    for key in ("ood-lora", "ood-largo"):
        assert ood.load_run(tmp_path / key).method == key.split("-")[1]
    # a second start keeps what is there: nothing copied again
    before = (tmp_path / "ood-lora" / "prebuilt.json").stat().st_mtime_ns
    again = make_context(tmp_path, "demo", background=False, keys={"ood-lora"})
    assert again.status.get("ood-lora")["message"] == "cached"
    assert (tmp_path / "ood-lora" / "prebuilt.json").stat().st_mtime_ns == before


def test_a_changed_config_or_a_damaged_file_is_trained_not_installed(tmp_path, monkeypatch):
    spec = next(s for s in profile("demo", tmp_path) if s.key == "clip-block_lora")
    cfg = resolve(spec)
    # the fingerprint does not depend on where the runs root is
    other = next(s for s in profile("demo", tmp_path / "elsewhere") if s.key == spec.key)
    assert (
        premade.portable_fingerprint(resolve(other), tmp_path / "elsewhere")
        == (MANIFEST["runs"][spec.key]["fingerprint"])
    )
    changed = SimpleNamespace(**{**vars(spec), "overrides": {**spec.overrides, "optim.lr": 0.02}})
    assert not premade.install(changed, resolve(changed), tmp_path)
    assert not (tmp_path / spec.key).exists()

    damaged = tmp_path / "shipped"
    import shutil

    shutil.copytree(premade.SHIPPED, damaged)
    with open(damaged / spec.key / "adapter" / "adapter.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    assert not premade.install(spec, cfg, tmp_path, damaged)
    calls = []
    monkeypatch.setattr(pipeline_module("clip"), "train", lambda *a, **k: calls.append(a))
    status = BuildStatus()
    build_one(spec, tmp_path, status, shipped=damaged)
    assert calls, "a damaged shipped run must be trained"
    assert premade.install(spec, cfg, tmp_path / "ok")  # the package's own copy is whole
    calls.clear()
    build_one(spec, tmp_path / "ok", status)  # installed: kept
    assert not calls and status.get(spec.key)["message"] == "cached"
    build_one(spec, tmp_path / "ok", status, rebuild=True)  # lorakit demo --rebuild
    assert len(calls) == 1
    marker = json.loads((tmp_path / "ok" / spec.key / "prebuilt.json").read_text())
    assert marker["source"] == "built" and set(marker["phases"]) == {"pretrain"}


def test_demo_has_a_rebuild_option():
    from typer.testing import CliRunner

    from lorakit.apps.cli.commands import app

    out = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"}).output
    assert "--rebuild" in out


def test_checkpoints_round_trip_through_safetensors(tmp_path):
    state = {
        "arch": "tiny_vit",
        "classes": ["circle", "square"],
        "config": {"width": 48, "depth": 3, "checkpoint": str(tmp_path / "bb.pt")},
        "state_dict": {"blocks.0.weight": torch.randn(3, 4), "heads.head.bias": torch.zeros(2)},
    }
    state["state_dict"]["tied"] = state["state_dict"]["blocks.0.weight"]  # shared storage
    torch.save(state, tmp_path / "bb.pt")
    premade.checkpoint_to_safetensors(
        tmp_path / "bb.pt", tmp_path / "bb.safetensors", lambda v: premade.portable(v, tmp_path)
    )
    back = premade.safetensors_to_state(tmp_path / "bb.safetensors")
    assert back["config"]["checkpoint"] == "@RUNS@/bb.pt"  # no build machine's path shipped
    back = premade.safetensors_to_state(
        tmp_path / "bb.safetensors", lambda v: premade.localised(v, tmp_path)
    )
    assert premade._same_state(back, state)
    out = tmp_path / "out"
    assert premade.install_backbone(tmp_path / "bb.safetensors", out / "bb.pt", out)
    assert not premade.install_backbone(tmp_path / "bb.safetensors", out / "bb.pt", out)
    installed = torch.load(out / "bb.pt", weights_only=True)
    assert installed["config"]["checkpoint"] == str(out / "bb.pt")
    assert premade._same_state(installed["state_dict"], state["state_dict"])


def test_build_phases_report_progress_and_an_eta_per_phase():
    now = [0.0]
    phases = BuildPhases({"pretrain": 100, "train": 50, "evaluate": 50}, clock=lambda: now[0])
    now[0] = 30.0
    assert phases.message() == "pretrain: 0:30 so far, ETA ~1:10"
    assert phases.fraction() == pytest.approx(30 / 200)
    now[0] = 100.0
    phases.on_train_start(None, None)
    trainer = SimpleNamespace(global_step=0, max_steps=10)
    for step, t in ((1, 102.0), (5, 110.0)):
        trainer.global_step, now[0] = step, t
        phases.on_train_batch_end(trainer, None, {"loss": torch.tensor(1.0)}, None, 0)
    assert phases.message() == "train: step 5/10, ETA 0:10"
    assert phases.fraction() == pytest.approx((100 + 25) / 200)
    now[0] = 130.0
    phases.on_train_end(None, None)
    now[0] = 190.0  # longer than the last build took: the ETA stays at zero, not negative
    assert phases.message() == "evaluate: 1:00 so far, ETA ~0:00"
    assert phases.fraction() == pytest.approx(0.99)
    assert phases.finish() == {"pretrain": 100.0, "train": 30.0, "evaluate": 60.0}
    assert phases.fraction() == 1.0


def test_build_phases_count_a_pipelines_step0_validation_as_training(tmp_path):
    """The pipeline's callbacks run before the caller's: the ASR validation decodes its
    step-0 WER in on_train_start, which must read as training, not as pretraining."""
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return (self.w - batch).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    phases, seen = BuildPhases(), []

    class StepZeroValidation(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append(phases.message())

    trainer = L.Trainer(
        max_steps=2, callbacks=[StepZeroValidation(), phases], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(Module(), torch.utils.data.DataLoader(torch.ones(4, 1), batch_size=2))
    assert seen and seen[0].startswith("train:")
    assert set(phases.finish()) == {"pretrain", "train", "evaluate"}


@pytest.mark.parametrize(
    "key",
    [k if k in FAST else pytest.param(k, marks=pytest.mark.slow) for k in SHIPPED],
)
def test_rebuilding_gives_the_shipped_run(key, tmp_path):
    """Same fingerprint and files, metrics within premade.TOLERANCE; the BIT_EXACT runs give
    every file but plots and timings byte for byte (the others may round float sums
    differently on another machine or thread count: their adapters may differ slightly)."""
    premade.build([key], dest=tmp_path / "rebuilt", work=tmp_path / "work", every=3600)
    diff = premade.compare(premade.SHIPPED, tmp_path / "rebuilt", key)
    assert diff["same_fingerprint"], diff
    assert not (diff["missing"] or diff["extra"]), diff
    assert not diff["metrics_off"], diff
    if key in BIT_EXACT:
        assert not diff["differ"], diff
        assert "adapter/adapter.safetensors" in diff["identical"], diff
    else:  # only the trained tensors may differ
        assert all(rel.startswith("adapter/") for rel in diff["differ"]), diff


def test_a_field_added_later_at_its_default_keeps_the_shipped_fingerprint():
    """A new optional config field (the recording-scene augmentations) appears in every
    resolved config at its 'off' default; a run saved before it existed (the shipped asr run
    without those keys) must still match (else the hub retrains it on start), and turning
    the field on must not."""
    from lorakit.apps.web.shipped import fingerprint
    from lorakit.data.runs import ADDED_LATER

    shipped = yaml.safe_load((premade.SHIPPED / "asr-s2_lora" / "config.yaml").read_text())
    later = {n.split(".")[1] for n in ADDED_LATER if n.startswith("augment.")}
    assert later and later <= set(shipped["augment"])  # saved after the fields existed
    old = {k: v for k, v in shipped["augment"].items() if k not in later}
    saved = {**shipped, "augment": old}  # as a run saved before them
    now = {**saved, "augment": {**old, "reverb_p": 0.0, "reverb_rt60": (0.2, 0.8)}}
    assert fingerprint(now) == fingerprint(saved)
    now["augment"]["reverb_p"] = 0.5
    assert fingerprint(now) != fingerprint(saved)
