"""``featviz``: one table of subcommands, one convention per kind.

Three kinds of command:

* ``hydra``: a Hydra app (``render`` is the default when the first word is not a command):
  ``key=value`` overrides, ``-m`` to sweep, ``--help`` shows the config groups.
* ``config``: reads the composed config like a render (``key=value`` overrides) plus its own
  ``--flags``; prints or writes figures; no sweeps.
* ``folder``: works on files and folders given as arguments and ``--flags`` only.

Every command answers a mistake the same way (:mod:`featviz.app.reporting`): one line,
``featviz NAME: error: ...`` (``featviz: error:`` for a render), exit code 2, whether it is a
:class:`~featviz.errors.FeatvizError`, Hydra's composition error (a misspelt choice or key
names the closest valid ones), an OS error on a path the user gave, or a misspelt command
word. ``featviz render --help`` shows featviz's own options (:func:`render_help`); Hydra's
page is ``--hydra-help``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from featviz.app.reporting import hydra_message, report
from featviz.errors import FeatvizError, closest

Kind = Literal["hydra", "config", "folder"]


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
        "featviz COMMAND --help shows a command's arguments; featviz render --help the config groups;",
        "featviz --version the installed version.",
    ]
    return "\n".join(lines)


#: The primary config of each Hydra command (conf/<name>.yaml).
CONFIG_NAMES = {"render": "config", "units": "units", "microscope": "microscope"}
_NOT_GROUPS = frozenset({"schema", "hydra", "experiment_base"})


def render_help(command: Command) -> str:
    """``featviz render|units|microscope --help``: the config groups with their options and the
    top-level keys with their defaults, read from ``conf/`` (Hydra's own page: ``--hydra-help``)."""
    from omegaconf import OmegaConf

    from featviz.app.config import CONF_DIR, compose, studies

    cfg = compose([], CONFIG_NAMES[command.name])
    prog = "featviz" if command.name == "render" else f"featviz {command.name}"
    lines = [
        f"usage: {prog} [KEY=VALUE ...] [-m]     {command.summary}",
        "",
        "Overrides are KEY=VALUE (lists KEY=[a,b]); -m sweeps comma-separated values (KEY=a,b,c), one job each.",
        "",
        "== Configuration groups ==   GROUP=OPTION (+experiment=NAME adds an experiment)",
    ]
    for folder in sorted(p for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in _NOT_GROUPS):
        if folder.name == "experiment":  # the studies of experiments/, every one of them
            names = studies()
            lines += textwrap.wrap(f"+experiment ({len(names)} studies, experiments/): {', '.join(names)}", width=100,
                                   initial_indent="  ", subsequent_indent="      ", break_on_hyphens=False)
            continue
        options = sorted(f.stem for f in folder.glob("*.yaml"))
        shown = ", ".join(options[:14]) + (f", ... ({len(options)} in all)" if len(options) > 14 else "")
        lines.append(f"  {folder.name}: {shown}")
    lines += ["", "== Keys (defaults) ==   GROUP.KEY=VALUE for a group's own keys, e.g. param.size=160"]
    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    scalars = [f"{k}={v}" for k, v in plain.items() if k != "hydra" and not isinstance(v, dict)]
    lines += [f"  {line}" for line in _wrap(scalars)]
    own = plain.get(command.name) if command.name != "render" else None
    if isinstance(own, dict):
        lines += [f"  {line}" for line in _wrap([f"{command.name}.{k}={v}" for k, v in own.items()])]
    lines += ["", f"{prog} --cfg job prints the whole composed config; --hydra-help shows Hydra's own flags; docs: README.md."]
    return "\n".join(lines)


def _wrap(items: Sequence[str], width: int = 96) -> list[str]:
    out: list[str] = []
    for item in items:
        if out and len(out[-1]) + 2 + len(item) <= width:
            out[-1] += f"  {item}"
        else:
            out.append(item)
    return out


def _jobs_in_other_processes(command: Command, argv: Sequence[str]) -> bool:
    """A sweep whose launcher runs its jobs in processes of their own (joblib, submitit, ...).

    Only then does the parent pass SIGTERM on (:func:`~featviz.app.isolation.forwarding_stops_to_jobs`):
    under the basic launcher the job runs in this process and its own handlers stop it.
    """
    multirun = command.name == "microscope" or any(a in ("-m", "--multirun") for a in argv)
    launcher = [a.partition("=")[2] for a in argv if a.lstrip("+~").startswith(("launcher=", "hydra/launcher="))]
    return multirun and bool(launcher) and launcher[-1] != "basic"


def run_hydra(command: Command, argv: Sequence[str]) -> int:
    """A Hydra command: Hydra's errors are raised to here (``HYDRA_FULL_ERROR``), not printed by
    Hydra in many lines, and reported in one; a sweep passes SIGTERM on to its job processes."""
    from featviz.app.config import environ_set
    from featviz.app.isolation import forwarding_stops_to_jobs

    prog = "featviz" if command.name == "render" else f"featviz {command.name}"
    if any(a in ("-h", "--help") for a in argv):
        print(render_help(command))
        return 0
    if any(a in ("-m", "--multirun") for a in argv) and any(a in ("-c", "--cfg", "-i", "--info") for a in argv):
        return report(prog, "-m (--multirun) and --cfg/--info cannot go together: drop -m and give each swept key one value "
                            "(e.g. seed=0) to see one job's config")
    wants_trace = os.environ.get("HYDRA_FULL_ERROR") == "1"
    sys.argv = [prog, *("--help" if a == "--hydra-help" else a for a in argv)]  # a Hydra app reads its overrides from sys.argv
    try:
        with environ_set({"HYDRA_FULL_ERROR": "1"}), forwarding_stops_to_jobs() if _jobs_in_other_processes(command, argv) else nullcontext():
            _load(command.run)()
    except FeatvizError as exc:
        return report(prog, exc)
    except Exception as exc:
        message = hydra_message(exc)
        if message is None or wants_trace:
            raise
        return report(prog, message)
    return 0


def run_command(command: Command, argv: Sequence[str]) -> int:
    """Run one subcommand with its arguments; returns the exit code."""
    if command.kind == "hydra":
        return run_hydra(command, argv)
    prog = f"featviz {command.name}"
    assert command.parser is not None
    parser: argparse.ArgumentParser = _load(command.parser)(prog)
    parser.description = parser.description or command.summary
    args = parser.parse_args(list(argv))
    args.command = command.name
    try:
        message = _load(command.run)(args)
    except FeatvizError as exc:
        return report(prog, exc)
    except Exception as exc:
        message = hydra_message(exc)  # the render overrides of a config command
        if message is not None:
            return report(prog, message)
        if isinstance(exc, OSError):  # a path the user gave: missing, a file where a folder goes, read-only, full
            return report(prog, f"cannot use {exc.filename or 'a path given'}: {exc.strerror or exc}; check the path and that its folder is writable")
        raise
    if message:
        print(message)
    return 0


def _unknown_command(word: str) -> str | None:
    """A first word that is neither a command nor an override nor a flag: the closest commands."""
    if "=" in word or word.startswith("-") or Path(word).exists():
        return None
    near = closest(word, BY_NAME, n=3)
    hint = f"did you mean {' or '.join(near)}?" if near else "featviz --help lists them"
    return f"{word!r} is not a command (nor a KEY=VALUE override of a render); {hint}"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to its subcommand; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args and args[0] in ("-V", "--version"):
        from featviz.app.config import git_commit, version

        commit = git_commit()
        print(f"featviz {version()}" + (f" (commit {commit[:12]})" if commit else ""))
        return 0
    if args and args[0] in BY_NAME:
        return run_command(BY_NAME[args[0]], args[1:])
    if args and (message := _unknown_command(args[0])):
        return report("featviz", message)
    return run_command(BY_NAME["render"], args)
