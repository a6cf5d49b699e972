"""``lorakit transcribe``: transcribe audio files with a trained run's adapter, or with a
plain Whisper model; ``lorakit export-asr``: merged ``.pt`` / CTranslate2 export of a run.

    lorakit transcribe --run runs/asr a.wav b.flac
    lorakit transcribe --model tiny.en-ct2 --beam-size 5 a.wav
    lorakit export-asr --run runs/asr --out runs/asr/export --format pt --format ct2
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _load(run: Path | None, model: str | None):
    """The Whisper model of ``run`` (its config's model + adapter/) or ``model`` alone."""
    from lorakit.core import load_adapter
    from lorakit.data.runs import RunFolder
    from lorakit.speech.whisper.build import load_whisper

    if run is not None:
        folder = RunFolder(run)
        cfg = folder.read_config()
        whisper_model = load_whisper(model or (cfg.get("model") or {}).get("name"))
        if not (folder.adapter / "adapter_config.json").is_file():
            raise ValueError(f"{run} has no adapter/ folder: train the run first")
        load_adapter(whisper_model, folder.adapter)
        return whisper_model, (cfg.get("model") or {}).get("language", "en")
    return load_whisper(model), "en"


def register(app: typer.Typer) -> None:
    @app.command()
    def transcribe(
        audio: list[Path] = typer.Argument(..., help="audio files (any format ffmpeg reads)"),
        run: Path = typer.Option(
            None, "--run", "-r", help="run folder with adapter/ (lorakit train asr)"
        ),
        model: str = typer.Option(
            None,
            "--model",
            "-m",
            help="Whisper model: tiny.en-ct2 (default), a "
            "CTranslate2 folder, a .pt file or a Whisper name",
        ),
        beam_size: int = typer.Option(None, help="beam search width (default: greedy)"),
        max_duration: float = typer.Option(
            30.0, "--max-duration", help="refuse audio longer than this (s)"
        ),
        as_json: bool = typer.Option(False, "--json", help="print JSON lines"),
    ) -> None:
        """Transcribe audio with Whisper (plus a run's adapter when --run is given)."""
        from lorakit.speech.whisper.transcribe import DecodeConfig
        from lorakit.speech.whisper.transcribe import transcribe as run_transcribe

        try:
            whisper_model, language = _load(run, model)
            cfg = DecodeConfig(
                beam_size=beam_size, language=language, max_duration=max_duration, sample_len=None
            )
            texts = run_transcribe(whisper_model, audio, cfg)
        except ValueError as e:
            _fail(str(e))
        for path, text in zip(audio, texts, strict=True):
            typer.echo(
                json.dumps({"audio": str(path), "text": text}) if as_json else f"{path}\t{text}"
            )

    @app.command("export-asr")
    def export_asr(
        run: Path = typer.Option(..., "--run", "-r", help="run folder with adapter/"),
        out: Path = typer.Option(None, "--out", "-o", help="output folder (default RUN/export)"),
        fmt: list[str] = typer.Option(
            ["pt", "ct2"], "--format", help="pt (openai-whisper) and/or ct2"
        ),
    ) -> None:
        """Merge a run's adapter into Whisper and write a .pt and/or a CTranslate2 folder."""
        from lorakit.speech.whisper.export import export_run

        try:
            whisper_model, _ = _load(run, None)
            written = export_run(whisper_model, out or run / "export", tuple(fmt))
        except ValueError as e:
            _fail(str(e))
        for kind, path in written.items():
            typer.echo(f"{kind}\t{path}")
