"""Speech manifests: JSONL or CSV rows of ``audio``, ``text`` and optional ``speaker``,
``group``, ``duration``. Relative audio paths resolve against the manifest's folder.

Every error names the file and line (``ValueError``), so a bad row in a 100k-line
manifest is found at once.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

REQUIRED = ("audio", "text")
OPTIONAL = ("id", "speaker", "group", "duration")


@dataclass(frozen=True)
class Utterance:
    """One manifest row; ``audio`` is an absolute path, ``line`` its line in the manifest."""

    id: str
    audio: Path
    text: str
    speaker: str = ""
    group: str = ""
    duration: float | None = None
    source: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.source} line {self.line}"


def _row_to_utterance(row: dict, path: Path, line: int) -> Utterance:
    where = f"{path} line {line}"
    if not isinstance(row, dict):
        raise ValueError(
            f"{where}: expected an object with 'audio' and 'text', got {type(row).__name__}"
        )
    missing = [k for k in REQUIRED if not str(row.get(k) or "").strip()]
    if missing:
        raise ValueError(f"{where}: missing or empty field(s) {missing}")
    unknown = sorted(set(row) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid: {list(REQUIRED + OPTIONAL)}")
    duration = row.get("duration")
    if duration not in (None, ""):
        try:
            duration = float(duration)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: duration {duration!r} is not a number") from None
        if duration <= 0:
            raise ValueError(f"{where}: duration must be > 0, got {duration}")
    else:
        duration = None
    audio = Path(str(row["audio"]))
    if not audio.is_absolute():
        audio = (path.parent / audio).resolve()
    return Utterance(
        id=str(row.get("id") or f"{path.stem}-{line}"),
        audio=audio,
        text=str(row["text"]).strip(),
        speaker=str(row.get("speaker") or ""),
        group=str(row.get("group") or ""),
        duration=duration,
        source=str(path),
        line=line,
    )


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for i, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rows.append((i, json.loads(raw)))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {i}: not valid JSON ({e.msg})") from None
    return rows


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return []
        missing = [k for k in REQUIRED if k not in reader.fieldnames]
        if missing:
            raise ValueError(
                f"{path} line 1: CSV header lacks column(s) {missing} (has {reader.fieldnames})"
            )
        rows = []
        for row in reader:
            if None in row:
                raise ValueError(f"{path} line {reader.line_num}: more values than header columns")
            rows.append((reader.line_num, {k: v for k, v in row.items() if v not in (None, "")}))
        return rows


def read_manifest(path: str | Path, check_audio_exists: bool = True) -> list[Utterance]:
    """Parse a ``.jsonl`` / ``.json`` (one object per line) or ``.csv`` manifest."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"manifest {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        rows = _read_jsonl(path)
    elif suffix in (".csv", ".tsv"):
        rows = _read_csv(path)
    else:
        raise ValueError(f"manifest {path}: unknown format {suffix!r}; use .jsonl or .csv")
    utts = [_row_to_utterance(row, path, line) for line, row in rows]
    if not utts:
        raise ValueError(f"manifest {path} has no rows")
    if check_audio_exists:
        for u in utts:
            if not u.audio.is_file():
                raise ValueError(f"{u.where}: audio file {u.audio} does not exist")
    return utts


def write_manifest(path: str | Path, utts: list[Utterance]) -> Path:
    """Write JSONL (or CSV by suffix) with audio paths relative to the manifest folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in utts:
        row = {
            k: v
            for k, v in asdict(u).items()
            if k not in ("source", "line") and v not in ("", None)
        }
        audio = Path(u.audio)
        row["audio"] = (
            str(audio.relative_to(path.parent.resolve()))
            if audio.is_absolute() and audio.is_relative_to(path.parent.resolve())
            else str(audio)
        )
        rows.append(row)
    if path.suffix.lower() == ".csv":
        fields = ["id", "audio", "text", "speaker", "group", "duration"]
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def groups(utts: list[Utterance]) -> list[str]:
    return sorted({u.group for u in utts if u.group})
