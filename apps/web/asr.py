"""Child-speech app (Whisper + S2-LoRA): record or upload audio, or synthesise a sentence;
transcripts of the base and the adapted model side by side with word-level differences
highlighted; a "make it child-like" toggle that applies the child-voice transform (pitch,
formant, tempo) so the domain gap can be heard and read; the adapter's rank-coefficient
heatmap.
"""

from __future__ import annotations

import difflib
import random
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from lorakit.apps.web.common import LIMITS, MODELS, check_audio, demo_temp_root, folder_key, guarded
from lorakit.apps.web.gains import no_gain
from lorakit.apps.web.prebuilt import pipeline_module
from lorakit.data.runs import RunFolder

RUN_KEY = "asr-s2_lora"
SAMPLE_RATE = 16000
# the child-like transform: fixed, mid-range amounts of the corpus generator's child style
CHILD_SEMITONES, CHILD_FORMANT, CHILD_TEMPO = 4.5, 1.25, 1.1


@dataclass
class AsrRun:
    model: torch.nn.Module  # whisper.model.Whisper with the run's adapter loaded
    heatmap: str | None
    metrics: dict


def model_spec(cfg: dict) -> str | None:
    """The Whisper model named by a run's config (the pipeline's ``backbone`` section,
    ``model`` in runs written before the rename)."""
    section = cfg.get("backbone") or cfg.get("model") or {}
    if isinstance(section, str):
        return section
    return section.get("name") or section.get("spec") or section.get("checkpoint")


def load_run(folder: Path) -> AsrRun:
    from lorakit.core import load_adapter
    from lorakit.data.runs import RunFolder
    from lorakit.speech.whisper.build import load_whisper
    from lorakit.speech.whisper.evaluate import lambda_heatmap

    pipeline_module("asr")
    run = RunFolder.existing(folder)  # read only: nothing is created in a loaded run
    cfg = run.read_config()
    if not (run.adapter / "adapter_config.json").is_file():
        raise ValueError(
            f"{folder} has no trained adapter (adapter/adapter_config.json is missing)"
        )
    model = load_whisper(model_spec(cfg))
    load_adapter(model, run.adapter)
    # never written into the loaded run: the app's own scratch folder
    scratch = demo_temp_root() / "asr"
    scratch.mkdir(parents=True, exist_ok=True)
    heat = lambda_heatmap(model, scratch / f"lambda-{uuid.uuid4().hex[:10]}.png")
    return AsrRun(model.eval(), str(heat) if heat else None, run.read_metrics())


def get_run(ctx, folder) -> tuple[AsrRun, threading.Lock]:
    path = ctx.require(folder, RUN_KEY, "asr")
    return MODELS.get(("asr",) + folder_key(path), lambda: load_run(path))


def child_like(wave: torch.Tensor) -> torch.Tensor:
    """Adult speech -> child-like: higher pitch, shorter vocal tract, faster tempo."""
    from lorakit.data.audio import formant_warp, pitch_shift, time_stretch

    out = pitch_shift(wave, CHILD_SEMITONES, SAMPLE_RATE)
    out = formant_warp(out, CHILD_FORMANT, SAMPLE_RATE)
    out = time_stretch(out, CHILD_TEMPO)
    return out / max(float(out.abs().max()), 1e-6) * 0.9


@torch.no_grad()
def transcribe_both(run: AsrRun, lock: threading.Lock, wave: torch.Tensor) -> tuple[str, str]:
    """(base transcript, adapted transcript) of a 16 kHz waveform."""
    from lorakit.core import disable, enable
    from lorakit.speech.whisper.features import log_mel
    from lorakit.speech.whisper.transcribe import DecodeConfig, decode, max_seconds

    cfg = DecodeConfig(batch_size=1)
    limit = max_seconds(run.model, cfg)
    if wave.numel() / SAMPLE_RATE > limit:
        raise ValueError(
            f"audio is {wave.numel() / SAMPLE_RATE:.1f} s long; this model takes at most {limit:.0f} s"
        )
    mel = log_mel(wave, run.model)[None]
    with lock:
        adapted = decode(run.model, mel, cfg)[0]
        disable(run.model)
        try:
            base = decode(run.model, mel, cfg)[0]
        finally:
            enable(run.model)
    return base, adapted


# legend of the word marks: what a transcript word is, compared with the reference
WRONG, EXTRA, MISSED = "wrong word", "extra word", "missed word"
MARK_COLORS = {WRONG: "#fab005", EXTRA: "#ff922b", MISSED: "#ff6b6b"}


def _key(word: str) -> str:
    return word.lower().strip(".,!?;:\"'")


def word_diff(hypothesis: str, reference: str) -> list:
    """HighlightedText value of ``hypothesis`` compared word by word with ``reference``
    (case and punctuation ignored): words that match are unmarked; a word in place of a
    reference word is ``wrong word``, one with no reference counterpart ``extra word``, and
    a reference word the transcript lacks is shown in brackets as ``missed word``."""
    hyp, ref = hypothesis.split(), reference.split()
    sm = difflib.SequenceMatcher(a=[_key(w) for w in ref], b=[_key(w) for w in hyp], autojunk=False)
    out = []
    for op, i0, i1, j0, j1 in sm.get_opcodes():
        if op == "equal":
            out += [(w + " ", None) for w in hyp[j0:j1]]
            continue
        out += [(w + " ", WRONG if op == "replace" else EXTRA) for w in hyp[j0:j1]]
        if op == "delete" or (op == "replace" and i1 - i0 > j1 - j0):
            out += [(f"[{w}] ", MISSED) for w in ref[i0 + (j1 - j0) : i1]]
    return out


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    from lorakit.speech.whisper.evaluate import normalizer

    norm = normalizer("en")
    ref, hyp = norm(reference), norm(hypothesis)
    if not ref.strip():
        raise ValueError("the reference transcript is empty after normalisation")
    return float(jiwer.wer(ref, hyp or "<empty>"))


def synthesize(text: str, seed: int) -> torch.Tensor:
    """An adult voice reading ``text`` (espeak-ng), 16 kHz."""
    from lorakit.data.speech import CorpusStyle, speak

    if not isinstance(text, str) or not text.strip():
        raise ValueError("type a sentence to synthesise")
    if len(text) > 200:
        raise ValueError("keep the sentence under 200 characters")
    wave, _voice = speak(text.strip(), CorpusStyle().adult, random.Random(int(seed)))
    return wave


def save_wave(wave: torch.Tensor, tag: str) -> str:
    import soundfile as sf

    folder = Path(tempfile.gettempdir()) / "lorakit-demo" / "audio"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tag}-{uuid.uuid4().hex[:10]}.wav"
    sf.write(path, wave.numpy().astype(np.float32), SAMPLE_RATE)
    return str(path)


def run_transcribe(ctx, folder, audio, childlike: bool, reference: str):
    """(audio heard by the model, base diff, adapted diff, scores markdown, heatmap)."""
    wave = check_audio(audio, LIMITS)
    if childlike:
        wave = child_like(wave)
    run, lock = get_run(ctx, folder)
    base, adapted = transcribe_both(run, lock, wave)
    has_ref = bool(reference and reference.strip())
    # each transcript against the reference; without one, against the other model's output
    left = word_diff(base, reference if has_ref else adapted)
    right = word_diff(adapted, reference if has_ref else base)
    against = (
        "the reference transcript"
        if has_ref
        else "the other model's transcript (no reference given)"
    )
    lines = [
        f"**{'child-like' if childlike else 'original'} audio**, {wave.numel() / SAMPLE_RATE:.1f} s. "
        f"Marked words differ from {against}: *wrong word* replaces a word, *extra word* has "
        "no counterpart, *[missed word]* is a word the transcript lacks."
    ]
    if has_ref:
        lines += [
            "",
            "| model | WER |",
            "|---|---|",
            f"| base Whisper | {wer(reference, base):.1%} |",
            f"| + S2-LoRA | {wer(reference, adapted):.1%} |",
        ]
    heard = save_wave(wave, "heard")
    return (
        heard,
        left or [("(no words)", None)],
        right or [("(no words)", None)],
        "\n".join(lines),
        run.heatmap,
    )


def run_numbers(metrics: dict) -> str:
    """The run's held-out WERs (speakers its training never heard) against the base model's,
    and one sentence when S2-LoRA did not beat it."""
    rows = [
        (label, metrics.get(f"wer_heldout_{group}"), metrics.get(f"baseline_wer_heldout_{group}"))
        for label, group in (("child", "child"), ("adult", "adult"))
    ]
    shown = [
        f"{label} WER {a:.3f} (base Whisper {b:.3f})"
        for label, a, b in rows
        if isinstance(a, int | float) and isinstance(b, int | float)
    ]
    if not shown:
        return ""
    note = no_gain("asr", metrics)
    return (
        "**Pre-made run, held-out speakers (never heard in training):** "
        + ", ".join(shown)
        + "; lower is better."
        + (f" **{note}**" if note else "")
    )


# --------------------------------------------------------------------------- page


def _output_column() -> tuple:
    """What the model heard, both transcripts (errors marked), the WER line and the
    S2-LoRA rank heatmap."""
    heard = gr.Audio(label="what the model heard", interactive=False, elem_id="asr-heard")
    colors = MARK_COLORS
    base_out = gr.HighlightedText(
        label="base Whisper",
        color_map=colors,
        show_legend=True,
        show_inline_category=False,
        elem_id="asr-base",
    )
    adapted_out = gr.HighlightedText(
        label="Whisper + S2-LoRA",
        color_map=colors,
        show_legend=True,
        show_inline_category=False,
        elem_id="asr-adapted",
    )
    result = gr.Markdown(elem_id="asr-result")
    heatmap = gr.Image(
        label="S2-LoRA rank coefficients |lambda|", interactive=False, elem_id="asr-heatmap"
    )
    return heard, base_out, adapted_out, result, heatmap


def build_tab(ctx) -> None:
    gr.Markdown("### Child speech: Whisper vs Whisper + S2-LoRA\n" + ctx.model_note(RUN_KEY))
    banner = ctx.banner("asr", [RUN_KEY])
    numbers = gr.Markdown(elem_id="asr-numbers")
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(
                sources=["upload", "microphone"],
                type="filepath",
                label=f"speech (at most {LIMITS.audio_seconds:.0f} s)",
                elem_id="asr-audio",
            )
            with gr.Row():
                text = gr.Textbox(
                    label="or synthesise a sentence",
                    value="the teacher found a red ball today",
                    scale=3,
                    elem_id="asr-text",
                )
                speak = gr.Button("Speak it", scale=1, elem_id="asr-speak")
            # on by default: the example sentence, made child-like, is where the shipped run
            # shows its gain (base "The pizza pie is not fair to me." -> S2-LoRA exact)
            childlike = gr.Checkbox(
                value=True, label="make it child-like (pitch, formant, tempo)", elem_id="asr-child"
            )
            reference = gr.Textbox(
                label="reference transcript (optional, for WER)", elem_id="asr-reference"
            )
            folder = gr.Textbox(
                label="run folder", value=str(ctx.run_path(RUN_KEY)), elem_id="asr-folder"
            )
            go = gr.Button("Transcribe", variant="primary", interactive=False, elem_id="asr-go")
        with gr.Column():
            outputs = _output_column()

    def on_speak(t):
        return save_wave(synthesize(t, 0), "tts"), t

    def on_go(f, a, c, r):
        return run_transcribe(ctx, f, a, bool(c), r)

    speak.click(guarded(on_speak), text, [audio, reference])
    go.click(
        guarded(on_go),
        [folder, audio, childlike, reference],
        list(outputs),
        concurrency_id="infer",
    )
    ctx.gate(
        banner,
        [RUN_KEY],
        [go],
        also=(lambda: run_numbers(RunFolder.existing(ctx.run_path(RUN_KEY)).read_metrics()), [numbers]),
    )


def build_app(ctx) -> gr.Blocks:
    return ctx.single_app("child speech", "child speech recognition", [RUN_KEY], build_tab)
