"""``python -m featviz``: the command line (:mod:`featviz.app.cli`)."""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    from featviz.app.cli import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
