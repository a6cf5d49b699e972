"""The command line of a recipe module that exposes ``check(data_root, **opts)`` and
``run(data_root, out, **opts)`` (the COD and OOD recipes): ``--data-root``, ``--out``,
``--check`` (only check the inputs) and ``--opt key=value`` for any of the module's
``OPTIONS`` (values are YAML scalars or lists: ``--opt steps=4000 --opt sets=[CAMO]``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lorakit.data.runs import parse_value


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, as every lorakit error
        raise ValueError(f"{self.prog}: {message}")


def parse(prog: str, module, argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog=prog, description=(module.__doc__ or "").split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True, help="the datasets' root folder")
    p.add_argument("--out", type=Path, help="the run folder to write (required unless --check)")
    p.add_argument("--check", action="store_true", help="only check the inputs, then stop")
    p.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a recipe option: " + ", ".join(module.OPTIONS),
    )
    args = p.parse_args(argv)
    opts = {}
    for item in args.opt:
        key, sep, value = item.partition("=")
        if not sep or key not in module.OPTIONS:
            raise ValueError(
                f"{prog}: --opt {item!r} is not KEY=VALUE with KEY one of {', '.join(module.OPTIONS)}"
            )
        opts[key] = parse_value(value)
    if not args.check and args.out is None:
        raise ValueError(f"{prog}: --out is required (or --check to only check the inputs)")
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        if not (args.out / "config.yaml").is_file():  # a run folder resumes; anything else is kept
            raise ValueError(f"{prog}: --out {args.out} exists and is not a lorakit run folder")
    args.opts = opts
    return args


def cli(prog: str, module, argv: list[str]) -> None:
    """Parse, check every input up front (one-line ``ValueError``), then run."""
    args = parse(prog, module, argv)
    module.check(args.data_root, **args.opts)
    if args.check:
        print(f"{prog}: every input under {args.data_root} is in place")
        return
    metrics = module.run(args.data_root, args.out, **args.opts)
    print(json.dumps(metrics, indent=2, default=str))
