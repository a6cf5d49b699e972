"""atomic_write_text from several threads of one process (the web apps' fuzz test found two
"Use generated example set" requests at once failing on a shared temp file name)."""

import threading

from lorakit.data.runs import atomic_write_text


def test_threads_writing_one_file_at_once_never_fail(tmp_path):
    target, errors = tmp_path / "spec.json", []

    def write(i):
        try:
            for _ in range(200):
                atomic_write_text(target, f"{i}" * 1000)
        except OSError as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_text() in {f"{i}" * 1000 for i in range(4)}
    assert [p.name for p in tmp_path.iterdir()] == ["spec.json"]  # no temp file left
