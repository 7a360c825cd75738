"""Shared fixtures: the embedded model is loaded once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# Tests are deterministic regardless of the machine they run on; on the CPU unless --device says otherwise.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", choices=["cpu", "cuda"],
                     help="device of the device-aware tests (those taking the `device` fixture); benchmarks/gpu_check.py runs them with cuda")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "device_aware: takes the `device` fixture (set automatically); `-m device_aware --device cuda` runs them on a GPU")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parametrized = "device" in getattr(getattr(item, "callspec", None), "params", {})
        if "device" in getattr(item, "fixturenames", ()) and not parametrized:
            item.add_marker(pytest.mark.device_aware)


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> str:
    """The device ``--device`` names (cpu by default); skips every test that takes it when that is cuda and none is visible."""
    name = str(request.config.getoption("--device"))
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda but no CUDA GPU is visible")
    return name


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 error of ``a`` against the reference ``b``."""
    return float((a - b).norm() / b.norm())


def hf_share(images: torch.Tensor, cutoff: float = 0.25) -> float:
    """Share of non-DC spectral power above ``cutoff`` cycles/pixel (computed in the tests, independently of featviz.metrics)."""
    x = images - images.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().pow(2).mean(dim=(0, 1))
    fy = torch.fft.fftfreq(x.shape[-2])[:, None]
    fx = torch.fft.fftfreq(x.shape[-1])[None, :]
    return float(power[(fx**2 + fy**2).sqrt() > cutoff].sum() / power.sum())


@pytest.fixture(scope="session")
def lite0():
    from featviz.models import build_model

    return build_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def plain_lite0():
    """EfficientNet-Lite0 that no test optimizes (``lite0`` is shared with runs that fold and
    fuse it): the reference of the speed-up tests, which deep-copy it before optimizing."""
    from featviz.models import build_model

    return build_model("efficientnet_lite0", device="cpu")


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m featviz ARGS`` in a subprocess and capture its output."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "featviz", *args], cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def slurm_cluster():
    """One real Slurm cluster on this machine for the whole session (``tests/cluster/local_slurm.py``):
    munged, MariaDB, slurmdbd, slurmctld and slurmd in a temp folder, each stopped by its pid at the end.

    Tests that take it are skipped, with the reason, where the daemons cannot start (not root, or
    the Debian packages missing: ``.ci/run`` installs them). Mark them ``@pytest.mark.cluster`` so
    ``pytest -m cluster`` runs them alone. It lives here, not in a ``tests/cluster/conftest.py``:
    a second module named ``conftest`` would shadow this one for ``from conftest import ...``.
    """
    import shutil

    from cluster.local_slurm import LocalSlurm, unavailable

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
