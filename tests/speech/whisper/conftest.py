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


@pytest.fixture
def fixed_adapter():
    """``apply(model, scale)``: inject an S2-LoRA (r=4, alpha=8) on the decoder attention and
    fill every trainable ``B`` with ``scale * randn`` from a generator seeded 0: a fixed
    adapter strong enough to change some transcripts (the export-equivalence tests)."""
    import torch

    from lorakit.core import inject, make_config
    from lorakit.speech.whisper.pipeline import DECODER_ATTN

    def apply(model, scale: float):
        inject(model, make_config("s2_lora", r=4, alpha=8, targets=(DECODER_ATTN,)))
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.requires_grad and name.endswith(".B"):
                    p.copy_(scale * torch.randn(p.shape, generator=gen))
        return model

    return apply


@pytest.fixture
def short_recipe_config(tmp_path):
    """``load(path)``: a ``lorakit train asr`` config (``path`` None: the defaults) whose
    generated data is cut to 60 child train, 10 val and 2 child test sentences under
    ``tmp_path`` (the short real-model recipe runs)."""
    from lorakit.data.runs import load_config
    from lorakit.speech.whisper import pipeline

    def load(path):
        cfg = load_config(path, [], pipeline.DEFAULTS)
        cfg["data"]["generate"].update(
            dir=str(tmp_path / "speech"),
            heldout_dir=str(tmp_path / "heldout"),
            train_sentences=60,
            val_sentences=10,
            test_sentences=2,
            train_groups=["child"],
            test_groups=["child"],
        )
        return cfg

    return load
