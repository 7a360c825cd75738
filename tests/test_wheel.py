"""featviz as a lab installs it: the wheel, in a fresh virtual environment, run from an empty folder.

The wheel is built from a copy of the checkout's files and installed (``--no-deps``) into a new
venv whose only view of the test environment is its third-party packages (a ``.pth`` line: torch,
Hydra, ... without featviz's editable install, whose finder that line does not run). Every
command runs with that venv's ``featviz`` script, in a folder outside any checkout, with no
PYTHONPATH: what works here works after ``pip install featviz-*.whl`` anywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

LAB = REPO / "tests" / "app" / "fixtures" / "lab_project"
SMALL = ["steps=4", "logger=none", "param.size=32", "metrics.enabled=false", "progress=false"]


def checkout_files() -> list[str]:
    """The files a clone holds (tracked, and new ones not ignored): what ``pip install git+...`` builds from."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if (REPO / line).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(wheel, venv)``: featviz built and installed outside the checkout."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to copy from")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    for name in checkout_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(root / "dist"), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = (root / "dist").glob("featviz-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed",
                    "--no-compile", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    return wheel, venv


def featviz(venv: Path, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 240) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(venv / "bin" / "featviz"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**clean, "WANDB_MODE": "offline", **(env or {})})


def test_the_wheel_holds_every_module_config_and_study(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {name for name in checkout_files() if name.startswith("featviz/") and name.endswith(".py")}
    expected |= {f"featviz/{name}" for name in checkout_files() if name.startswith("conf/") and name.endswith(".yaml")}
    expected |= {f"featviz/{name}" for name in checkout_files() if name.startswith("experiments/") and Path(name).suffix in (".yaml", ".md", ".jpg", ".png")}
    assert expected - names == set()
    assert "hydra_plugins/featviz_searchpath/featviz_searchpath.py" in names
    assert "hydra_plugins/featviz_fused/fused_launcher.py" in names


def test_installed_featviz_runs_from_an_empty_folder(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, venv = installed
    where = featviz(venv, "--version", cwd=tmp_path)
    assert where.returncode == 0 and where.stdout.startswith("featviz "), where.stderr
    origin = subprocess.run([str(venv / "bin" / "python"), "-c", "import featviz; print(featviz.__file__)"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert str(venv) in origin and str(REPO) not in origin

    helped = featviz(venv, "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "commands:" in helped.stdout
    groups = featviz(venv, "render", "--help", cwd=tmp_path)
    assert groups.returncode == 0 and "spectrum" in groups.stdout and "vivid" in groups.stdout, groups.stderr

    done = featviz(venv, *SMALL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (final,) = (tmp_path / "outputs" / "runs").glob("*/*/final.png")
    assert final.stat().st_size > 0

    composed = featviz(venv, "+experiment=spectrum", "--cfg", "job", cwd=tmp_path)
    assert composed.returncode == 0, composed.stderr[-2000:]
    assert "family: none" in composed.stdout and "level: medium" in composed.stdout


def test_a_labs_own_project_composes_featviz(installed: tuple[Path, Path], tmp_path: Path) -> None:
    """docs/your_project.md's layout, outside the package: its experiment through hydra.searchpath,
    and its own primary config listing featviz's config in its defaults."""
    _, venv = installed
    lab = tmp_path / "lab"
    shutil.copytree(LAB, lab)
    env = {"PYTHONPATH": str(lab)}  # the lab's own package (a lab pip-installs it)

    swept = featviz(venv, "-m", f"hydra.searchpath=[file://{lab / 'conf'}]", "+experiment=depth", *SMALL,
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=lab, env=env)
    assert swept.returncode == 0, swept.stderr[-2000:]
    assert sorted(p.parent.name for p in (tmp_path / "sweep").glob("*/final.png")) == ["0", "1"]

    own = featviz(venv, "--config-dir", str(lab / "conf"), "--config-name", "lab", *SMALL, "objective.layer=features.3",
                  f"hydra.run.dir={tmp_path / 'own'}", cwd=lab, env=env)
    assert own.returncode == 0, own.stderr[-2000:]
    assert (tmp_path / "own" / "final.png").is_file()
    config = featviz(venv, "--config-dir", str(lab / "conf"), "--config-name", "lab", "launcher=cluster", "--cfg", "all", cwd=lab, env=env)
    assert config.returncode == 0, config.stderr[-2000:]
    for line in ("project: mylab-featviz", "_target_: mylab.nets.Net", "partition: gpu", "timeout_min: 240"):
        assert line in config.stdout
