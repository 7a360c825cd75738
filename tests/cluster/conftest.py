"""The ``slurm_cluster`` fixture: one real Slurm cluster on this machine for the whole session.

Tests that take it are skipped, with the reason, where the daemons cannot start (not root, or
the Debian packages missing: ``.ci/run`` installs them). Mark them ``@pytest.mark.cluster`` so
``pytest -m cluster`` runs them alone; :mod:`sweeps` runs featviz against the cluster.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from local_slurm import LocalSlurm, unavailable


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[LocalSlurm]:
    """munged, MariaDB, slurmdbd, slurmctld and slurmd in a temp folder; each stopped by its pid at the end."""
    reason = unavailable()
    if reason:
        pytest.skip(f"no local Slurm cluster: {reason}")
    cluster = LocalSlurm()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
