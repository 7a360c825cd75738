"""``featviz``: one table of subcommands, one convention per kind.

Three kinds of command:

* ``hydra``: a Hydra app (``render`` is the default when the first word is not a command):
  ``key=value`` overrides, ``-m`` to sweep, ``--help`` shows the config groups.
* ``config``: reads the composed config like a render (``key=value`` overrides) plus its own
  ``--flags``; prints or writes figures; no sweeps.
* ``folder``: works on files and folders given as arguments and ``--flags`` only.

A :class:`~featviz.errors.FeatvizError` from a ``config`` or ``folder`` command is printed
as one line, ``featviz NAME: error: ...``, with exit code 1 (``config``) or 2 (``folder``,
as for a usage error: the arguments name something that is not there).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from featviz.errors import FeatvizError

Kind = Literal["hydra", "config", "folder"]
EXIT_CODES = {"config": 1, "folder": 2}


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one line of help, its kind and where its code lives."""

    name: str
    summary: str
    kind: Kind
    run: str  # "module:function": main() for hydra, run(args) -> message for the others
    parser: str | None = None  # "module:function": parser(prog) -> ArgumentParser


_C = "featviz.app.commands"
COMMANDS: tuple[Command, ...] = (
    Command("render", "optimize images for an objective (the default command; -m sweeps)", "hydra", "featviz.app.main:main"),
    Command("units", "every channel of a layer in batches, one labelled contact sheet", "hydra", f"{_C}.units:main"),
    Command("microscope", "every unit of some layers as resumable shards of one multirun, and a static site", "hydra", f"{_C}.microscope:main"),
    Command("layers", "a model's hookable layers and their output shapes", "config", f"{_C}.layers:run", f"{_C}.layers:parser"),
    Command("checkerboard", "input-gradient magnitude per layer (the checkerboard figure)", "config", f"{_C}.diagnostics:run_checkerboard", f"{_C}.diagnostics:checkerboard_parser"),
    Command("directions", "L-inf, L2 and decorrelated steepest-ascent directions", "config", f"{_C}.diagnostics:run_directions", f"{_C}.diagnostics:directions_parser"),
    Command("microscope-site", "the static site of a microscope sweep, from its shards' saved units", "folder", f"{_C}.microscope:run_site", f"{_C}.microscope:site_parser"),
    Command("report", "a finished sweep as a comparison grid and metrics tables", "folder", "featviz.app.report:run", "featviz.app.report:parser"),
    Command("dataset-examples", "the images of a folder that most and least excite a unit", "folder", f"{_C}.dataset_examples:run", f"{_C}.dataset_examples:parser"),
    Command("maco-spectrum", "the magnitude spectrum of param=maco from a folder of photos", "folder", f"{_C}.priors:run", f"{_C}.priors:maco_spectrum_parser"),
    Command("train-denoiser", "the denoising autoencoder of regularizer.denoiser from photos", "folder", f"{_C}.priors:run", f"{_C}.priors:train_denoiser_parser"),
    Command("patch-bank", "the patch bank of regularizer.patch from photos", "folder", f"{_C}.priors:run", f"{_C}.priors:patch_bank_parser"),
)
BY_NAME = {c.name: c for c in COMMANDS}


def _load(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def usage() -> str:
    """The top-level help: every subcommand with its one line."""
    width = max(len(c.name) for c in COMMANDS)
    lines = [
        "usage: featviz [COMMAND] [ARGS]      (no command = render: featviz key=value ..., -m to sweep)",
        "",
        "commands:",
        *(f"  {c.name:<{width}}  {c.summary}" for c in COMMANDS),
        "",
        "featviz COMMAND --help shows a command's arguments; featviz render --help the config groups.",
    ]
    return "\n".join(lines)


def run_command(command: Command, argv: Sequence[str]) -> int:
    """Run one subcommand with its arguments; returns the exit code."""
    prog = f"featviz {command.name}"
    if command.kind == "hydra":
        sys.argv = [prog, *argv]  # a Hydra app reads its overrides from sys.argv
        _load(command.run)()
        return 0
    assert command.parser is not None
    parser: argparse.ArgumentParser = _load(command.parser)(prog)
    parser.description = parser.description or command.summary
    args = parser.parse_args(list(argv))
    args.command = command.name
    try:
        message = _load(command.run)(args)
    except FeatvizError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_CODES[command.kind]
    if message:
        print(message)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to its subcommand; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args and args[0] in BY_NAME:
        return run_command(BY_NAME[args[0]], args[1:])
    return run_command(BY_NAME["render"], args)
