"""Gradio's result files written whole or not at all, so two identical results never race.

Gradio (6.31) names a result image, audio clip or byte payload after a hash of its
content and writes it in place (``Path.write_bytes``, or an encoder writing straight to
the final name). Two sessions that get the same result at once (the same upload sent by
two clients, or one client twice) write the same path: the second write truncates the
file while the first response is still streaming it, and that client gets
``peer closed connection without sending complete message body``. Its own
``save_file_to_cache`` already stages and renames; ``install`` makes the other three do the
same: a copy that exists is reused (its time touched, as gradio does, so the cache's
age-based cleanup keeps it), otherwise the bytes go to a temporary name in the same folder
and ``os.replace`` moves them into place. A reader holding the old file keeps reading a
complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from gradio import processing_utils as pu

_DONE = "_lorakit_atomic"


def _publish(path: Path, write) -> str:
    """``write(staging_path)`` then rename onto ``path``; an existing ``path`` is reused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            os.utime(path)
        except OSError:
            pass
        return str(path.resolve())
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(staging)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return str(path.resolve())


def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    data = pu.encode_pil_to_bytes(img, format)
    path = Path(cache_dir) / pu.hash_bytes(data) / f"{name}.{format}"
    return _publish(path, lambda tmp: Path(tmp).write_bytes(data))


def save_bytes_to_cache(data: bytes, file_name: str, cache_dir: str) -> str:
    if not Path(file_name).suffix:
        file_name = file_name + pu.detect_audio_format(data)
    path = Path(cache_dir) / pu.hash_bytes(data) / Path(file_name).name
    return _publish(path, lambda tmp: Path(tmp).write_bytes(data))


def save_audio_to_cache(data: np.ndarray, sample_rate: int, format: str, cache_dir: str) -> str:
    meta = {"cache_schema": "audio-cache-v1", "dtype": str(data.dtype), "format": format,
            "sample_rate": int(sample_rate), "shape": data.shape}  # fmt: skip
    digest = hashlib.sha256()  # the same name gradio gives it
    digest.update(pu.hash_seed)
    digest.update(json.dumps(meta, sort_keys=True).encode("utf-8"))
    digest.update(data.tobytes())
    path = Path(cache_dir) / digest.hexdigest() / f"audio.{format}"
    return _publish(path, lambda tmp: pu.audio_to_file(sample_rate, data, tmp, format=format))


def install() -> None:
    """Replace gradio's three in-place cache writers (once per process)."""
    if getattr(pu, _DONE, False):
        return
    for fn in (save_pil_to_cache, save_bytes_to_cache, save_audio_to_cache):
        setattr(pu, fn.__name__, fn)
    setattr(pu, _DONE, True)
