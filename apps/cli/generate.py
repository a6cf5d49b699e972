"""``lorakit generate``: ICM-LoRA-style adapter generation on CLIP tasks and Whisper conditions.

    lorakit generate bank --out runs/bank --tasks 12 --held 6     # one adapter per task
    lorakit generate bank --domain whisper --out runs/wbank       # one per speech condition
    lorakit generate train --bank runs/bank                       # the CVAE generator
    lorakit generate adapter --bank runs/bank --task "red hexagon, blue cross in dark style" \\
        --out runs/gen                                            # runs/gen/adapter/
    lorakit generate report --bank runs/bank                      # held-out comparison

The logic lives in ``lorakit.data.adapter_bank``, with the domains
``lorakit.vision.clip.adapter_bank`` and ``lorakit.speech.whisper.adapter_bank``
(``--domain whisper``; ``train``, ``adapter`` and ``report`` read the domain from the
bank); errors are one line.
"""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(e: Exception) -> None:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _quiet() -> None:
    """No per-run Lightning banners (Lightning sets its logger's level when imported)."""
    import logging

    import lightning.pytorch  # noqa: F401

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no per-run banners


DOMAINS = ("clip", "whisper")


def _module(domain: str):
    if domain == "whisper":
        from lorakit.speech.whisper import adapter_bank
    else:
        from lorakit.vision.clip import adapter_bank
    return adapter_bank


def _bank_module(bank: Path):
    """The adapter-bank module of the bank's domain (recorded in its ``bank.json``)."""
    from lorakit.speech.whisper.adapter_bank import is_whisper_bank

    try:
        return _module("whisper" if is_whisper_bank(bank) else "clip")
    except ValueError as e:  # a damaged bank.json
        _fail(e)


def _whisper_bank(out, tasks, held, seed, steps, lr, rank, model, echo) -> list[Path]:
    from lorakit.speech.whisper.adapter_bank import WhisperBankSpec, build_bank

    given = {"tasks": tasks, "held": held, "seed": seed, "steps": steps, "lr": lr, "rank": rank}
    spec = WhisperBankSpec(**{k: v for k, v in given.items() if v is not None},
                           **({"model": model} if model else {}))  # fmt: skip
    return build_bank(out, spec, echo=echo)


def generate_bank(
    out: Path = typer.Option(..., "--out", "-o", help="bank folder (re-run to resume)"),
    domain: str = typer.Option("clip", help="clip (generated CLIP tasks) or whisper (speech "
                               "conditions: voice pitch, tempo, noise)"),
    tasks: int = typer.Option(12, help="bank adapters (one per generated task or condition)"),
    held: int = typer.Option(None, help="held-out tasks kept for `generate report` "
                             "[default: clip 6, whisper 4]"),
    classes: int = typer.Option(3, help="colour-shape classes per task (clip)"),
    seed: int = typer.Option(0, help="draws the tasks; the shared adapter init"),
    steps: int = typer.Option(None, help="optimizer steps per adapter [default: clip 60, "
                              "whisper 30]"),
    shots: int = typer.Option(8, help="training images per class (clip)"),
    lr: float = typer.Option(None, help="adapter learning rate [default: clip 1e-2, whisper 3e-3]"),
    rank: int = typer.Option(2, help="LoRA rank"),
    model: str = typer.Option(None, help="Whisper model (whisper) [default: tiny.en-ct2]"),
) -> None:
    """Train one adapter per generated CLIP task or Whisper condition; re-run to resume.

    clip: a task is a few colour-shape pairs in one style, on the pretrained stand-in.
    whisper: a condition is a voice pitch shift, a tempo and a noise SNR applied to the
    generated espeak-ng speech. A killed run continues, finished adapters are kept."""
    _quiet()
    if domain not in DOMAINS:
        _fail(ValueError(f"--domain {domain!r}: use one of {', '.join(DOMAINS)}"))
    if domain == "whisper":
        try:
            done = _whisper_bank(out, tasks, held, seed, steps, lr, rank, model, typer.echo)
        except (ValueError, OSError) as e:
            _fail(e)
        typer.echo(f"bank of {len(done)} adapters in {out}")
        return
    from lorakit.vision.clip.adapter_bank import BankSpec, build_bank

    held = 6 if held is None else held
    steps = 60 if steps is None else steps
    lr = 1e-2 if lr is None else lr

    spec = BankSpec(tasks=tasks, held=held, classes=classes, seed=seed, steps=steps,
                    shots=shots, lr=lr, rank=rank)  # fmt: skip
    try:
        done = build_bank(out, spec, echo=typer.echo)
    except (ValueError, OSError) as e:
        _fail(e)
    typer.echo(f"bank of {len(done)} adapters in {out}")

def generate_train(
    bank: Path = typer.Option(..., "--bank", "-b", help="folder of `generate bank`"),
    steps: int = typer.Option(1500, help="generator (CVAE) Adam steps, full batch"),
    latent: int = typer.Option(8, help="latent size Z"),
    hidden: int = typer.Option(128, help="MLP width"),
    beta: float = typer.Option(1.0, help="KL weight of the ELBO"),
    lr: float = typer.Option(2e-3, help="generator learning rate"),
    seed: int = typer.Option(0),
) -> None:
    """Train the generator on the bank; saved as BANK/generator (safetensors)."""
    try:
        info = _bank_module(bank).train_generator(bank, steps=steps, latent=latent, hidden=hidden, beta=beta,
                               lr=lr, seed=seed)  # fmt: skip
    except (ValueError, OSError) as e:
        _fail(e)
    typer.echo(f"generator trained on {info['bank']} adapters ({info['dim']} numbers each): "
               f"bank reconstruction error {info['bank_error_vs_mean']:.3f} of the bank "
               f"mean's; saved to {bank / 'generator'}")  # fmt: skip

def generate_adapter(
    bank: Path = typer.Option(..., "--bank", "-b", help="folder of `generate bank`"),
    task: str = typer.Option(..., "--task", "-t",
                             help="e.g. 'red hexagon, blue cross in sketch style' (clip), "
                             "'voice pitch +2 semitones, tempo 1.2, noise 10 dB SNR' (whisper)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder to write (OUT/adapter/)"),
) -> None:
    """Generate the adapter of a described task, with no training.

    OUT/adapter is an adapter folder (lorakit.core.load_adapter); OUT is a clip run
    folder (`lorakit eval clip --run OUT` scores it on the task's generated data); for a
    whisper bank, OUT/adapter loads into the bank's Whisper model."""
    module = _bank_module(bank)
    try:
        run = module.generate_adapter(bank, task, out)
    except (ValueError, OSError) as e:
        _fail(e)
    if module.__name__.endswith("whisper.adapter_bank"):
        typer.echo(f"wrote {run / 'adapter'}")
        return
    typer.echo(f"wrote {run / 'adapter'}; evaluate with `lorakit eval clip --run {run}`")

def generate_report(
    bank: Path = typer.Option(..., "--bank", "-b", help="folder of `generate bank`"),
) -> None:
    """Compare generated adapters with their baselines on the held-out tasks.

    Accuracy (clip) or WER (whisper) of the generated adapter against zero-shot, the bank
    mean, the nearest bank adapter and an adapter trained on the task (95 % intervals over
    tasks); writes BANK/report/report.{json,md,png}."""
    _quiet()
    try:
        result = _bank_module(bank).report(bank, echo=typer.echo)
    except (ValueError, OSError) as e:
        _fail(e)
    typer.echo(result["table"])
    typer.echo(f"wrote {', '.join(result['files'])}")


def register(app: typer.Typer) -> None:
    gen = typer.Typer(
        help="Generate CLIP or Whisper adapters from a task description (ICM-LoRA: a CVAE "
        "trained on a bank of adapters).",
        no_args_is_help=True,
    )
    gen.command("bank")(generate_bank)
    gen.command("train")(generate_train)
    gen.command("adapter")(generate_adapter)
    gen.command("report")(generate_report)
    app.add_typer(gen, name="generate")
