"""The espeak-ng corpus generator: manifests, groups, disjoint splits, caching."""

from __future__ import annotations

import soundfile as sf

from lorakit.data.audio import SAMPLE_RATE, load_audio
from lorakit.data.manifest import read_manifest
from lorakit.data.speech import SplitSpec, generate_corpus, make_sentences


def test_sentences_are_distinct_and_seeded():
    a = make_sentences(50, seed=1)
    assert len(set(a)) == 50 and a == make_sentences(50, seed=1) and a != make_sentences(50, seed=2)


def test_generate_corpus(tmp_path):
    splits = {"train": SplitSpec(2, ("child",)), "test": SplitSpec(1, ("adult", "child"))}
    manifests = generate_corpus(tmp_path, splits, seed=0)
    train, test = read_manifest(manifests["train"]), read_manifest(manifests["test"])
    assert [u.group for u in train] == ["child", "child"] and sorted(u.group for u in test) == [
        "adult",
        "child",
    ]
    assert not {u.text for u in train} & {u.text for u in test}
    info = sf.info(str(test[0].audio))
    assert info.samplerate == SAMPLE_RATE and info.duration > 0.5
    assert load_audio(test[0].audio).abs().max() > 0.1
    stamp = manifests["test"].stat().st_mtime_ns
    generate_corpus(tmp_path, splits, seed=0)  # same settings: reused, not regenerated
    assert manifests["test"].stat().st_mtime_ns == stamp
