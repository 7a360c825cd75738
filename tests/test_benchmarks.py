"""Every benchmark script still imports against the library it measures.

The benchmarks are run by hand, not by the suite, so a renamed function they use would
otherwise go unnoticed until someone needs a figure (``vs_lucent.py`` once imported a
factory that had been renamed). Importing each as a module runs its top level (its imports
and constants) without starting a measurement.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import REPO

SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))


def test_the_benchmarks_are_found() -> None:
    assert {"vs_lucent", "vs_lucent_process", "scaling", "sweep_jobs", "microscope_rate"} <= {p.stem for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_imports(script) -> None:
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does: dataclasses look their module up there
    spec.loader.exec_module(module)  # a measurement starts only under __main__
    assert 'if __name__ == "__main__":' in script.read_text(), f"{script.name} would measure on import"
