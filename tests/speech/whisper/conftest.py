"""Shared fixtures: a small espeak-ng corpus generated once per session."""

from __future__ import annotations

import pytest

from lorakit.data.speech import SplitSpec, generate_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """``{"train": manifest, "test": manifest}``: 3 child train sentences, 2 test sentences
    spoken by adult and child-like voices."""
    out = tmp_path_factory.mktemp("speech")
    return generate_corpus(
        out, {"train": SplitSpec(3, ("child",)), "test": SplitSpec(2, ("adult", "child"))}
    )


@pytest.fixture(scope="session")
def heldout_manifest(tmp_path_factory):
    """The project's flite held-out set (48 sentences x adult / child-like; ~10 s)."""
    from lorakit.data.heldout import generate_heldout

    return generate_heldout(tmp_path_factory.mktemp("heldout"))
