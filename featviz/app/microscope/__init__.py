"""``featviz microscope``: every unit of some layers as resumable shards of one Hydra multirun.

:mod:`.plan` cuts the units into batches and deals them to shards, :mod:`.shard` is one
shard's job (render, score and save each batch, skipping finished ones) with its
:mod:`.exemplars` (dataset examples) and :mod:`.signals` (stopping cleanly), :mod:`.tracking`
its W&B run, and :mod:`.site_callback` writes the static site
(:mod:`featviz.tools.microscope_site`) when the multirun ends.
"""
