"""Manifest parsing (JSONL, CSV) and errors that name the file and line."""

from __future__ import annotations

import pytest

from lorakit.data.manifest import Utterance, read_manifest, write_manifest


@pytest.fixture
def wavs(tmp_path):
    for name in ("a.wav", "b.wav"):
        (tmp_path / name).write_bytes(b"RIFF")
    return tmp_path


def test_jsonl_round_trip_relative_paths(wavs):
    utts = [
        Utterance("u1", wavs / "a.wav", "hello there", "s1", "child", 1.5),
        Utterance("u2", wavs / "b.wav", "good day", group="adult"),
    ]
    back = read_manifest(write_manifest(wavs / "m.jsonl", utts))
    assert [(u.id, u.audio, u.text, u.group) for u in back] == [
        (u.id, u.audio, u.text, u.group) for u in utts
    ]
    assert back[0].duration == 1.5 and back[1].line == 2
    assert '"audio": "a.wav"' in (wavs / "m.jsonl").read_text()


def test_csv(wavs):
    (wavs / "m.csv").write_text("audio,text,group\na.wav,hello,child\nb.wav,bye,\n")
    utts = read_manifest(wavs / "m.csv")
    assert [u.group for u in utts] == ["child", ""] and utts[0].audio == (wavs / "a.wav").resolve()


@pytest.mark.parametrize(
    "content, match",
    [
        (
            '{"audio": "a.wav", "text": "x"}\n{"audio": "a.wav"}\n',
            r"m.jsonl line 2: missing .*text",
        ),
        ('{"audio": "a.wav", "text": "x"}\nnot json\n', r"m.jsonl line 2: not valid JSON"),
        (
            '{"audio": "zz.wav", "text": "x"}\n',
            r"m.jsonl line 1: audio file .*zz.wav does not exist",
        ),
        ('{"audio": "a.wav", "text": "x", "speeker": "s"}\n', r"line 1: unknown field.*speeker"),
        (
            '{"audio": "a.wav", "text": "x", "duration": "long"}\n',
            r"line 1: duration 'long' is not a number",
        ),
        ("", r"has no rows"),
    ],
)
def test_jsonl_errors(wavs, content, match):
    (wavs / "m.jsonl").write_text(content)
    with pytest.raises(ValueError, match=match):
        read_manifest(wavs / "m.jsonl")


def test_csv_errors(wavs):
    (wavs / "m.csv").write_text("path,text\na.wav,hi\n")
    with pytest.raises(ValueError, match=r"m.csv line 1: CSV header lacks.*audio"):
        read_manifest(wavs / "m.csv")
    (wavs / "m.csv").write_text("audio,text\na.wav,hi\nb.wav,,\n")
    with pytest.raises(ValueError, match=r"m.csv line 3"):
        read_manifest(wavs / "m.csv")
    with pytest.raises(ValueError, match="unknown format"):
        read_manifest(wavs / "a.wav")
