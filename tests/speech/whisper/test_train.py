"""S2-LoRA / LoRA wiring on Whisper, a short training run that lowers the loss, resume."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from lorakit.core import inject, make_config, methods, regularization_loss
from lorakit.data.manifest import read_manifest
from lorakit.data.runs import RunFolder, TrainerOptions, build_trainer
from lorakit.speech.whisper.build import tiny_whisper
from lorakit.speech.whisper.features import IGNORE, SpeechDataset, make_collate
from lorakit.speech.whisper.train import TrainConfig, WhisperAdapterModule, sequence_loss


def test_s2_lora_shares_one_pair_per_shape():
    model = tiny_whisper("tiny-random-4l")
    report = inject(model, make_config("s2_lora", r=4, targets=("whisper-attn",)))
    ms = methods(model)
    assert len(ms) == 4 * 4 + 4 * 8  # encoder attn q/k/v/out, decoder self+cross
    shared = {id(m.shared.A) for m in ms}
    assert len(shared) == 1  # every attention projection is 64x64: one group
    assert report.trainable == 4 * (64 + 64) + 4 * len(ms)
    assert regularization_loss(model) > 0


def test_kv_cache_decoding_works_with_hosts_on_key_value():
    import whisper

    model = tiny_whisper()
    inject(model, make_config("lora", r=2, targets=("whisper-attn",)))
    mel = torch.zeros(1, 80, 600)
    result = whisper.decode(
        model,
        mel,
        whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False, sample_len=8),
    )
    assert isinstance(result[0].text, str)


def test_collate_masks_prompt_and_padding(corpus):
    model = tiny_whisper()
    ds = SpeechDataset(read_manifest(corpus["train"]), model)
    batch = make_collate(ds.prompt_len, ds.tokenizer.eot)([ds[0], ds[1]])
    assert batch["mels"].shape == (2, 80, 600)
    labels = batch["labels"]
    assert (labels[:, : ds.prompt_len - 1] == IGNORE).all()
    assert labels[0, ds.prompt_len - 1] != IGNORE  # first text token is learned
    assert (labels == ds.tokenizer.eot).sum() == 2


def _fit(model, corpus, out, steps, resume=True):
    ds = SpeechDataset(read_manifest(corpus["train"]), model)
    loader = DataLoader(
        ds, batch_size=3, shuffle=False, collate_fn=make_collate(ds.prompt_len, ds.tokenizer.eot)
    )
    module = WhisperAdapterModule(model, TrainConfig(lr=2e-2, warmup_steps=1), cache_ok=True)
    opts = TrainerOptions(
        max_steps=steps, log_every=1, checkpoint_every=2, progress=False, resume=resume
    )
    trainer, ckpt = build_trainer(opts, RunFolder(out))
    trainer.fit(module, loader, ckpt_path=ckpt)
    return module, loader, trainer


def _loss(model, loader):
    batch = next(iter(loader))
    with torch.no_grad():
        return float(sequence_loss(model(batch["mels"], batch["inputs"]), batch["labels"]))


def test_training_lowers_loss_and_resumes(corpus, tmp_path):
    model = tiny_whisper()
    inject(model, make_config("s2_lora", r=4, alpha=8, targets=("whisper-attn",)))
    ds = SpeechDataset(read_manifest(corpus["train"]), model)
    loader = DataLoader(ds, batch_size=3, collate_fn=make_collate(ds.prompt_len, ds.tokenizer.eot))
    before = _loss(model, loader)
    module, loader, trainer = _fit(model, corpus, tmp_path / "run", steps=6)
    assert _loss(model, loader) < before
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 6
    assert all(".adapters." in k for k in ckpt["state_dict"])  # adapter tensors only
    # resume: a fresh model continues from step 6 with the saved adapter tensors
    fresh = tiny_whisper()
    inject(fresh, make_config("s2_lora", r=4, alpha=8, targets=("whisper-attn",)))
    _, _, trainer2 = _fit(fresh, corpus, tmp_path / "run", steps=8)
    assert trainer2.global_step == 8


def test_frozen_encoder_outputs_are_cached(corpus, tmp_path):
    model = tiny_whisper()
    inject(
        model, make_config("lora", r=2, targets=(r"decoder\.blocks\.\d+\.cross_attn\.(key|value)",))
    )
    module, _, _ = _fit(model, corpus, tmp_path / "run", steps=2, resume=False)
    assert module.use_cache and len(module._cache) == 3
