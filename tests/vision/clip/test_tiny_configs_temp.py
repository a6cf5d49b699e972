"""Registering the tiny CLIP configs leaves nothing in TMPDIR (the web apps' fuzz test found
a ``lorakit-clip-configs-*`` folder left behind by every server)."""

import tempfile

from lorakit.vision.clip import backbone


def test_tiny_configs_are_registered_and_their_folder_removed(tmp_path, monkeypatch):
    import open_clip

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(backbone, "_registered", None)
    backbone.register_tiny_configs()
    assert list(tmp_path.iterdir()) == []
    for name in backbone.TINY_CONFIGS:
        assert open_clip.get_model_config(name) is not None


def test_threads_registering_at_once_never_fail(tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    errors = []

    def register():
        try:
            for _ in range(20):
                monkeypatch.setattr(backbone, "_registered", None)
                backbone.register_tiny_configs()
        except OSError as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=register) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and list(tmp_path.iterdir()) == []
