"""The subcommands of ``featviz`` (:mod:`featviz.app.cli` holds their table).

A ``config`` command's parser takes the render's ``key=value`` overrides as positional
arguments (:func:`config_parser`); a ``folder`` command's takes paths and flags.
"""

from __future__ import annotations

import argparse


def config_parser(prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """A parser whose positional arguments are Hydra overrides of the render config."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Hydra overrides of the render config, e.g. model=resnet18 +size=224")
    return parser
