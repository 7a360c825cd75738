"""``python -m featviz [overrides]`` renders; ``layers``, ``report``, ``checkerboard``, ``directions``, ``dataset-examples``,
``maco-spectrum``, ``train-denoiser``, ``patch-bank`` and ``units`` (contact sheets) are subcommands."""

from __future__ import annotations

import sys


def main() -> None:
    """Dispatch to a subcommand, or to the Hydra app when the first word is not one."""
    argv = sys.argv[1:]
    if argv and argv[0] == "layers":
        from featviz.layers import main as layers_main

        sys.exit(layers_main(argv[1:]))
    if argv and argv[0] == "report":
        from featviz.report import main as report_main

        sys.exit(report_main(argv[1:]))
    if argv and argv[0] in ("checkerboard", "directions"):
        from featviz.diagnostics import main as diagnostics_main

        sys.exit(diagnostics_main(argv))
    if argv and argv[0] == "dataset-examples":
        from featviz.dataset_examples import main as dataset_examples_main

        sys.exit(dataset_examples_main(argv[1:]))
    if argv and argv[0] in ("maco-spectrum", "train-denoiser", "patch-bank"):
        from featviz.priors import main as priors_main

        sys.exit(priors_main(argv))
    if argv and argv[0] == "units":
        from featviz.contact_sheet import main as units_main

        sys.argv = [sys.argv[0], *argv[1:]]  # the Hydra app reads its overrides from sys.argv
        units_main()
        return
    from featviz.app import main as app_main

    app_main()


if __name__ == "__main__":
    main()
