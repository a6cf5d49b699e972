"""The espeak-ng corpus generator and the flite held-out set: a large sentence bank, splits
that share no sentence, a held-out set sharing no sentence, voice or engine with training."""

from __future__ import annotations

import soundfile as sf

from lorakit.data import heldout, speech
from lorakit.data.audio import SAMPLE_RATE, load_audio
from lorakit.data.manifest import read_manifest
from lorakit.data.speech import (
    SplitSpec,
    generate_corpus,
    load_sentences,
    make_sentences,
    sentence_key,
    split_sentences,
)
from lorakit.speech.whisper.pipeline import DEFAULTS


def test_bank_is_large_varied_and_distinct():
    bank = load_sentences("bank")
    keys = {sentence_key(s) for s in bank}
    assert len(bank) >= 300 and len(keys) == len(bank)
    words = {w for k in keys for w in k.split()}
    assert len(words) > 800  # not a template vocabulary
    openings = [" ".join(k.split()[:2]) for k in keys]
    assert len(set(openings)) > 150  # no fixed sentence frame
    assert max(openings.count(o) for o in openings) < 0.1 * len(keys)


def test_sentences_are_distinct_and_seeded():
    a = make_sentences(50, seed=1)
    assert len(set(a)) == 50 and a == make_sentences(50, seed=1) and a != make_sentences(50, seed=2)


def test_default_splits_share_no_sentence():
    gen = DEFAULTS["data"]["generate"]
    splits = {
        "train": SplitSpec(gen["train_sentences"]),
        "val": SplitSpec(gen["val_sentences"]),
        "test": SplitSpec(gen["test_sentences"]),
    }
    parts = {k: {sentence_key(s) for s in v} for k, v in split_sentences(splits).items()}
    assert [len(parts[k]) for k in splits] == [s.n_sentences for s in splits.values()]
    assert not parts["train"] & parts["val"]
    assert not parts["train"] & parts["test"]
    assert not parts["val"] & parts["test"]


def test_generate_corpus(tmp_path):
    splits = {
        "train": SplitSpec(2, ("child",), versions=2),
        "val": SplitSpec(1, ("child",)),
        "test": SplitSpec(1, ("adult", "child")),
    }
    manifests = generate_corpus(tmp_path, splits, seed=0)
    train, val, test = (read_manifest(manifests[k]) for k in ("train", "val", "test"))
    assert [u.group for u in train] == ["child"] * 4 and len({u.text for u in train}) == 2
    assert sorted(u.group for u in test) == ["adult", "child"]
    texts = [{sentence_key(u.text) for u in s} for s in (train, val, test)]
    assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]
    assert all(u.speaker.startswith("espeak-ng:") for u in train + val + test)
    info = sf.info(str(test[0].audio))
    assert info.samplerate == SAMPLE_RATE and info.duration > 0.5
    assert load_audio(test[0].audio).abs().max() > 0.1
    stamp = manifests["test"].stat().st_mtime_ns
    generate_corpus(tmp_path, splits, seed=0)  # same settings: reused, not regenerated
    assert manifests["test"].stat().st_mtime_ns == stamp


def test_heldout_shares_no_sentence_voice_or_engine_with_training(tmp_path):
    bank = {sentence_key(s) for s in load_sentences("bank")}
    held_sentences = {sentence_key(s) for s in load_sentences("heldout")}
    assert len(held_sentences) >= 40 and not bank & held_sentences
    assert heldout.ENGINE != speech.ENGINE
    training_voices = {v.split("+")[0] for v in speech.ADULT_VOICES + speech.CHILD_VOICES}
    training_voices |= set(speech.ADULT_VOICES + speech.CHILD_VOICES)
    assert not set(heldout.VOICES) & training_voices
    utts = read_manifest(heldout.generate_heldout(tmp_path))
    assert {u.group for u in utts} == {"heldout_adult", "heldout_child"}
    assert {sentence_key(u.text) for u in utts} == held_sentences
    assert {u.speaker.split(":")[0] for u in utts} == {heldout.ENGINE}
    assert {u.speaker.split(":")[1] for u in utts} == set(heldout.VOICES)
    child = [u for u in utts if u.group == "heldout_child"]
    adult = [u for u in utts if u.group == "heldout_adult"]
    # the child-like rendering of a sentence is another voice than its adult one
    assert all(a.speaker != c.speaker for a, c in zip(adult, child, strict=True))
