"""``lorakit generate``: ICM-LoRA-style adapter generation on CLIP tasks.

    lorakit generate bank --out runs/bank --tasks 12 --held 6     # one adapter per task
    lorakit generate train --bank runs/bank                       # the CVAE generator
    lorakit generate adapter --bank runs/bank --task "red hexagon, blue cross in dark style" \\
        --out runs/gen                                            # runs/gen/adapter/
    lorakit generate report --bank runs/bank                      # held-out comparison

The logic lives in ``lorakit.vision.clip.adapter_bank``; errors are one line.
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


def generate_bank(
    out: Path = typer.Option(..., "--out", "-o", help="bank folder (re-run to resume)"),
    tasks: int = typer.Option(12, help="bank adapters (one per generated CLIP task)"),
    held: int = typer.Option(6, help="held-out tasks kept for `generate report`"),
    classes: int = typer.Option(3, help="colour-shape classes per task"),
    seed: int = typer.Option(0, help="draws the tasks; the shared adapter init"),
    steps: int = typer.Option(60, help="optimizer steps per adapter"),
    shots: int = typer.Option(8, help="training images per class"),
    lr: float = typer.Option(1e-2, help="adapter learning rate"),
    rank: int = typer.Option(2, help="LoRA rank"),
) -> None:
    """Train one CLIP adapter per generated task; re-run to resume.

    A task is a few colour-shape pairs in one style, on the pretrained stand-in; a
    killed run continues, finished adapters are kept."""
    _quiet()
    from lorakit.vision.clip.adapter_bank import BankSpec, build_bank

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
    from lorakit.vision.clip.adapter_bank import train_generator

    try:
        info = train_generator(bank, steps=steps, latent=latent, hidden=hidden, beta=beta,
                               lr=lr, seed=seed)  # fmt: skip
    except (ValueError, OSError) as e:
        _fail(e)
    typer.echo(f"generator trained on {info['bank']} adapters ({info['dim']} numbers each): "
               f"bank reconstruction error {info['bank_error_vs_mean']:.3f} of the bank "
               f"mean's; saved to {bank / 'generator'}")  # fmt: skip

def generate_adapter(
    bank: Path = typer.Option(..., "--bank", "-b", help="folder of `generate bank`"),
    task: str = typer.Option(..., "--task", "-t",
                             help="e.g. 'red hexagon, blue cross in sketch style'"),
    out: Path = typer.Option(..., "--out", "-o", help="folder to write (OUT/adapter/)"),
) -> None:
    """Generate the adapter of a described task, with no training.

    OUT/adapter is an adapter folder (lorakit.core.load_adapter); OUT is a clip run
    folder (`lorakit eval clip --run OUT` scores it on the task's generated data)."""
    from lorakit.vision.clip.adapter_bank import generate_adapter

    try:
        run = generate_adapter(bank, task, out)
    except (ValueError, OSError) as e:
        _fail(e)
    typer.echo(f"wrote {run / 'adapter'}; evaluate with `lorakit eval clip --run {run}`")

def generate_report(
    bank: Path = typer.Option(..., "--bank", "-b", help="folder of `generate bank`"),
) -> None:
    """Compare generated adapters with their baselines on the held-out tasks.

    Accuracy of the generated adapter against zero-shot, the bank mean, the nearest
    bank adapter and an adapter trained on the task (95 % intervals over tasks);
    writes BANK/report/report.{json,md,png}."""
    _quiet()
    from lorakit.vision.clip.adapter_bank import report as make_report

    try:
        result = make_report(bank, echo=typer.echo)
    except (ValueError, OSError) as e:
        _fail(e)
    typer.echo(result["table"])
    typer.echo(f"wrote {', '.join(result['files'])}")


def register(app: typer.Typer) -> None:
    gen = typer.Typer(
        help="Generate CLIP adapters from a task description (ICM-LoRA: a CVAE trained on a "
        "bank of adapters).",
        no_args_is_help=True,
    )
    gen.command("bank")(generate_bank)
    gen.command("train")(generate_train)
    gen.command("adapter")(generate_adapter)
    gen.command("report")(generate_report)
    app.add_typer(gen, name="generate")
