"""Early stopping on validation WER (best step restored) and bootstrap intervals."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from lorakit.core import inject, make_config
from lorakit.data.manifest import read_manifest
from lorakit.data.runs import RunFolder, TrainerOptions, build_trainer
from lorakit.speech.whisper.build import tiny_whisper
from lorakit.speech.whisper.evaluate import score, summarize
from lorakit.speech.whisper.features import SpeechDataset, make_collate
from lorakit.speech.whisper.train import TrainConfig, WhisperAdapterModule
from lorakit.speech.whisper.transcribe import DecodeConfig
from lorakit.speech.whisper.validate import ValidationWER, adapter_state, bootstrap_wer


class Scripted(ValidationWER):
    """Returns scripted WERs and remembers the adapter tensors seen at each check."""

    def __init__(self, utts, values, every, patience):
        super().__init__(utts, DecodeConfig(sample_len=4), every, patience)
        self.values, self.seen = list(values), []

    def wer(self, model):
        self.seen.append(adapter_state(model))
        return self.values.pop(0)


def test_early_stopping_restores_the_best_step(corpus, tmp_path):
    model = tiny_whisper()
    inject(model, make_config("lora", r=2, targets=("whisper-attn",)))
    utts = read_manifest(corpus["train"])
    ds = SpeechDataset(utts, model)
    loader = DataLoader(ds, batch_size=3, collate_fn=make_collate(ds.prompt_len, ds.tokenizer.eot))
    val = Scripted(utts, [0.9, 0.5, 0.7, 0.8, 0.1, 0.1], every=2, patience=2)
    opts = TrainerOptions(max_steps=20, checkpoint_every=100, progress=False, resume=False)
    trainer, _ = build_trainer(opts, RunFolder(tmp_path / "run"), [val])
    trainer.fit(WhisperAdapterModule(model, TrainConfig(lr=5e-2, warmup_steps=1)), loader)
    assert trainer.global_step == 6  # two validations without improvement after step 2
    assert [s for s, _ in val.history] == [0, 2, 4, 6]
    assert val.best_step == 2 and val.best == 0.5
    now = adapter_state(model)
    best, last = val.seen[1], val.seen[3]
    assert all(torch.equal(now[k], best[k]) for k in now)
    assert any(not torch.equal(now[k], last[k]) for k in now)


def test_bootstrap_interval_over_sentences(corpus):
    utts = read_manifest(corpus["test"])
    perfect = score(utts, [u.text for u in utts])
    assert bootstrap_wer(perfect) == (0.0, 0.0)
    hyps = [u.text if u.text != utts[0].text else "completely wrong words here" for u in utts]
    rows = score(utts, hyps)
    lo, hi = bootstrap_wer(rows)
    assert lo <= summarize(rows)["wer"] <= hi and hi > lo
