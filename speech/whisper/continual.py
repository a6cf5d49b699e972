"""Whisper's side of the continual protocol (``lorakit.data.continual``): one speech
condition after another, WER on every condition after each task.

Conditions (``CONDITIONS``), all from the offline espeak-ng corpus
(``lorakit.data.speech``): ``adult`` voices, ``child`` (child-like: pitch, formant and
tempo shifted), ``noisy`` (adult speech with white noise at ``snr_db``) and ``fast``
(adult speech time-stretched by ``fast_rate``, pitch kept). Each task of the sequence gets
its own sentences (sentence ``i`` belongs to task ``i mod N``), in train, val (the
learning rate is chosen there) and test (the matrix) splits.

Adapters go on the decoder's attention by default (``targets``): the encoder then stays
the pretrained one, so its outputs are computed once per utterance and reused in
training and decoding (a large saving on CPU); set ``targets`` to adapt the encoder too.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import soundfile as sf
import torch
from torch.utils.data import DataLoader

from lorakit.core import make_config
from lorakit.data.audio import SAMPLE_RATE, load_audio, time_stretch
from lorakit.data.continual.domain import check_tasks
from lorakit.data.manifest import Utterance, read_manifest
from lorakit.data.runtime import SeededItems, StepSampler
from lorakit.data.speech import SplitSpec, generate_corpus

from .build import DEFAULT_MODEL, load_whisper
from .evaluate import score, summarize
from .features import SpeechDataset, log_mel, make_collate
from .train import sequence_loss
from .transcribe import DecodeConfig, decode

CONDITIONS = ("adult", "child", "noisy", "fast")
# the decoder's self-attention and the query/output of its cross-attention: the cross
# key/value projections run over all 1500 audio frames, by far the costliest on a CPU
DECODER_ATTN = (
    r"decoder\.blocks\.\d+\.attn\.(query|key|value|out)",
    r"decoder\.blocks\.\d+\.cross_attn\.(query|out)",
)
DEFAULTS = {
    "model": DEFAULT_MODEL,
    "dir": "cache/continual-speech",  # the generated corpus (cached)
    "train_sentences": 36,  # per split, shared out over the tasks (i mod N)
    "val_sentences": 12,
    "test_sentences": 24,
    "data_seed": 0,
    "snr_db": 5.0,
    "fast_rate": 1.6,
    "targets": list(DECODER_ATTN),
    "max_duration": 30.0,
    "decode_batch_size": 8,
    "sample_len": 48,  # most tokens decoded per utterance (the sentences are short)
}
_ENCODED: dict[tuple[str, str], torch.Tensor] = {}  # (model, audio) -> frozen encoder output
_MODELS: dict = {}  # model name -> a pristine loaded model (copied per run)


def _noise_seed(key: str) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)


class WhisperTasks:
    """The Whisper domain; ``section`` is the config's ``whisper:`` part."""

    metric = "wer"
    higher_is_better = False
    extra_names: list[str] = []

    def __init__(self, section: dict, tasks: list[str]):
        unknown = sorted(set(section) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"whisper: unknown key(s) {unknown}; valid: {sorted(DEFAULTS)}")
        self.cfg = {**DEFAULTS, **section}
        tasks = check_tasks(tasks, list(CONDITIONS))
        if float(self.cfg["snr_db"]) > 60 or float(self.cfg["fast_rate"]) <= 1.0:
            raise ValueError("whisper: snr_db must be <= 60 and fast_rate > 1")
        self.task_names = list(tasks)
        self.dcfg = DecodeConfig(batch_size=int(self.cfg["decode_batch_size"]),
                                 sample_len=int(self.cfg["sample_len"]),
                                 max_duration=float(self.cfg["max_duration"]))  # fmt: skip
        self.splits: list[dict[str, list[Utterance]]] = []

    # ------------------------------------------------------------------ data
    def prepare(self, out: Path) -> None:
        c, n = self.cfg, len(self.task_names)
        root = Path(c["dir"])
        made = generate_corpus(root, {
            "train": SplitSpec(int(c["train_sentences"])),
            "val": SplitSpec(int(c["val_sentences"])),
            "test": SplitSpec(int(c["test_sentences"])),
        }, seed=int(c["data_seed"]))  # fmt: skip
        rows = {s: read_manifest(p) for s, p in made.items()}
        # noisy / fast copies belong to this corpus (ids repeat across corpus settings)
        self.corpus_id = json.loads((root / "corpus.json").read_text())["hash"][:12]
        self.splits = []
        for k, cond in enumerate(self.task_names):
            group = "child" if cond == "child" else "adult"
            task = {}
            for split, utts in rows.items():
                mine = [u for u in utts if u.group == group and int(u.id.split("-")[1]) % n == k]
                if not mine:
                    raise ValueError(f"whisper: no {split} sentences left for task {cond!r}")
                task[split] = [self._condition(u, cond, root) for u in mine]
            self.splits.append(task)
        self._audio = {u.id: u.audio for t in self.splits for s in t.values() for u in s}

    def _condition(self, u: Utterance, cond: str, root: Path) -> Utterance:
        """The utterance under condition ``cond`` (noisy / fast copies cached as WAV)."""
        if cond in ("adult", "child"):
            return replace(u, group=cond)
        tag = f"{cond}-{self.cfg['snr_db']}" if cond == "noisy" else f"{cond}-{self.cfg['fast_rate']}"
        path = root / "conditions" / self.corpus_id / tag / f"{u.id}.wav"
        if not path.is_file():
            wave = load_audio(u.audio)
            if cond == "noisy":
                gen = torch.Generator().manual_seed(_noise_seed(u.id))
                noise = torch.randn(wave.shape, generator=gen)
                power = wave.pow(2).mean() / 10 ** (float(self.cfg["snr_db"]) / 10)
                wave = wave + noise * power.sqrt()
            else:
                wave = time_stretch(wave, float(self.cfg["fast_rate"]))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp.wav")
            sf.write(tmp, wave.clamp(-1, 1).numpy(), SAMPLE_RATE)
            tmp.replace(path)
        return replace(u, audio=path, group=cond, id=f"{u.id}-{cond}")

    # ------------------------------------------------------------------ model
    def build_model(self, seed: int):
        """The pretrained model (a copy of one pristine load, shared by all runs)."""
        name = self.cfg["model"]
        if name not in _MODELS:
            _MODELS[name] = load_whisper(name)
        self._skeleton = _MODELS[name]
        model = copy.deepcopy(self._skeleton)
        return model.requires_grad_(False)  # a method makes trainable what it trains

    def adapter_config(self, method: str, hyper: dict):
        return make_config(method, targets=tuple(self.cfg["targets"]), **hyper)

    def set_task(self, model, ids) -> None:
        pass

    def _dataset(self, model, utts):
        return SpeechDataset(utts, model, "en", None, float(self.cfg["max_duration"]), 0)

    def batches(self, ids, steps: int, batch_size: int, seed: int):
        utts = [u for j in ids for u in self.splits[j]["train"]]
        ds = self._dataset(self._skeleton, utts)
        sampler = StepSampler(len(ds), batch_size, steps, seed)
        loader = DataLoader(SeededItems(ds), batch_sampler=sampler,
                            collate_fn=make_collate(ds.prompt_len, ds.tokenizer.eot))  # fmt: skip
        return loader, sampler

    # ------------------------------------------------------------------ encoder cache
    def _encoder_frozen(self, model) -> bool:
        from lorakit.core import named_hosts

        if any(n.startswith("encoder.") for n, _ in named_hosts(model)):
            return False
        return not any(p.requires_grad for p in model.encoder.parameters())

    def features(self, model, ids: list[str], audios: list, mels=None) -> torch.Tensor:
        """Encoder outputs ``(B, n_audio_ctx, d)``; cached while the encoder is frozen."""
        if not self._encoder_frozen(model):
            if mels is None:
                mels = torch.stack([log_mel(load_audio(a), model) for a in audios])
            return model.encoder(mels)
        keys = [(str(self.cfg["model"]), str(a)) for a in audios]
        todo = [i for i, k in enumerate(keys) if k not in _ENCODED]
        if todo:
            if mels is None:
                sub = torch.stack([log_mel(load_audio(audios[i]), model) for i in todo])
            else:
                sub = mels[todo]
            with torch.no_grad():
                out = model.encoder(sub)
            for j, i in enumerate(todo):
                _ENCODED[keys[i]] = out[j].clone()
        return torch.stack([_ENCODED[k] for k in keys])

    def loss(self, model, batch) -> torch.Tensor:
        audios = [self._audio[i] for i in batch["ids"]]
        feats = self.features(model, batch["ids"], audios, batch["mels"])
        return sequence_loss(model.decoder(batch["inputs"], feats), batch["labels"])


    # ------------------------------------------------------------------ scores
    def evaluate(self, model, j: int, split: str) -> float:
        utts = self.splits[j][split]
        feats = self.features(model, [u.id for u in utts], [u.audio for u in utts])
        with torch.no_grad():
            hyps = decode(model, feats, self.dcfg)
        return summarize(score(utts, hyps, "en"))["wer"]

    def extras(self, model) -> dict[str, float]:
        return {}
