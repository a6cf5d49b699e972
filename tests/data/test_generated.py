"""Generated data is written atomically (issue 22, item 5): a kill at any moment of any of
the four generators (few-shot shapes for CLIP, COD scenes for SAM, shift tasks for OOD,
the espeak-ng corpus for Whisper) leaves either the old complete data or a folder the next
call regenerates, the same bytes as an uninterrupted call, with no temporary folder left."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from lorakit.data import camouflage, fewshot, generated, shift, speech


class Kill(BaseException):
    """Stands in for SIGKILL in-process: no ``except Exception`` catches it."""


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.parent.iterdir() if p.name.startswith(f".{root.name}."))


def killed_on_call(monkeypatch, owner, name: str, n: int) -> None:
    """``owner.name`` raises ``Kill`` on its ``n``-th call."""
    real, calls = getattr(owner, name), []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise Kill
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def _write(stamp_text: str):
    def build(tmp: Path) -> None:
        (tmp / "images").mkdir()
        (tmp / "images" / "a.txt").write_text(stamp_text)
        (tmp / "labels.txt").write_text(stamp_text)
        (tmp / "stamp.json").write_text(stamp_text)

    return build


def test_a_kill_while_building_leaves_the_old_data_whole(tmp_path):
    root = tmp_path / "data"
    generated.install(root, _write("old"), "stamp.json")
    (root / "heldout").mkdir()  # not the generator's: left alone
    before = tree(root)

    def build(tmp):
        _write("new")(tmp)
        raise Kill

    with pytest.raises(Kill):
        generated.install(root, build, "stamp.json")
    assert tree(root) == before
    generated.install(root, _write("new"), "stamp.json")
    assert (root / "stamp.json").read_text() == "new" and (root / "heldout").is_dir()
    assert leftovers(root) == []


@pytest.mark.parametrize("n", [1, 2, 5])  # the old images out, the new in, the stamp in
def test_a_kill_between_the_renames_leaves_no_stamp(tmp_path, monkeypatch, n):
    """Whichever rename is the last to happen, the old stamp is gone (the data is not taken
    for complete) until the new stamp is in place."""
    root = tmp_path / "data"
    generated.install(root, _write("old"), "stamp.json")
    killed_on_call(monkeypatch, generated.os, "replace", n)
    with pytest.raises(Kill):
        generated.install(root, _write("new"), "stamp.json")
    monkeypatch.undo()
    assert not (root / "stamp.json").exists()
    generated.install(root, _write("new"), "stamp.json")
    assert {p.read_text() for p in root.rglob("*") if p.is_file()} == {"new"}
    assert leftovers(root) == []


def test_a_dead_process_temp_folder_is_removed_and_a_live_one_kept(tmp_path):
    root = tmp_path / "data"
    dead = tmp_path / ".data.999999999.tmp"  # no such pid
    live = tmp_path / f".data.{os.getppid()}.tmp"  # another process still writing
    dead.mkdir()
    live.mkdir()
    generated.install(root, _write("x"), "stamp.json")
    assert not dead.exists() and live.exists()


def _shapes(root):
    spec = {"classes": ["red circle", "green square"], "train_per_class": 2,
            "test_per_class": 2, "size": 16}  # fmt: skip
    fewshot.generate_shapes_dataset(root, spec)
    return root


def _cod(root):
    return camouflage.ensure_cod(root, camouflage.CamouflageSpec(n=3, size=32))


def _shift(root):
    task = shift.ShiftTask(classes=["circle", "square"], size=16, train_per_class=2,
                           test_per_class=2, ood_per_class=2, ood_styles=["sketch"])  # fmt: skip
    shift.write_shift_task(root, task)
    return root


def _speech(root):
    speech.generate_corpus(root, {"train": speech.SplitSpec(2, ("adult",)),
                                  "test": speech.SplitSpec(1, ("child",))})  # fmt: skip
    return root


GENERATORS = [
    (_shapes, fewshot.shapes, "render", 3),
    (_cod, camouflage, "render_scene", 2),
    (_shift, shift, "_write_folder", 2),
    (_speech, speech, "speak", 2),
]


@pytest.mark.parametrize(
    ("generate", "owner", "name", "n"), GENERATORS, ids=["clip", "cod", "ood", "asr"]
)
def test_a_kill_during_generation_then_the_same_call(tmp_path, monkeypatch, generate, owner,
                                                     name, n):  # fmt: skip
    reference = tree(generate(tmp_path / "reference"))
    root = tmp_path / "cache" / "data"
    killed_on_call(monkeypatch, owner, name, n)
    with pytest.raises(Kill):
        generate(root)
    monkeypatch.undo()
    half = tree(root) if root.is_dir() else {}
    assert set(half) <= {fewshot.GENERATING}, "a half data set was written in place"
    assert tree(generate(root)) == reference
    assert leftovers(root) == []


def test_two_threads_installing_one_folder_do_not_share_its_temp_folder(tmp_path):
    import threading
    import time as _time

    from lorakit.data.generated import install

    root, errors, started = tmp_path / "set", [], threading.Barrier(2)

    def build(tmp):
        _time.sleep(0.3)  # both threads are inside install at once
        (tmp / "data.txt").write_text("x")
        (tmp / "spec.json").write_text("{}")

    def worker():
        started.wait()
        try:
            install(root, build, "spec.json")
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert (root / "spec.json").is_file() and (root / "data.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no temp folder left
