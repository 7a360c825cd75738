"""The application layer: the only code that knows Hydra, OmegaConf, W&B and argparse.

``schemas`` types every config group, ``build`` turns a config into library objects,
``job`` runs one render into its folder, ``main`` is the Hydra entry point, ``cli`` the
subcommand table; ``report``, ``sweep_summary`` and ``tracking`` read and record results.
"""
