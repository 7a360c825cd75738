"""Every ``python -m featviz`` command line of the README runs, as written, at tiny sizes.

Each line is run with overrides appended that only shrink it (1-2 steps, 32 px images, few
crops): a later ``key=value`` or ``--flag`` wins, so the command itself is the README's.
Placeholders become real paths: ``PHOTOS`` a folder of generated photos,
``outputs/multirun/<date>/<time>`` a finished sweep, ``RUN`` a finished two-job sweep. Two
lines cannot run here and are composed only (``--cfg all``, first value of each sweep): Slurm (no cluster) and
``logger.mode=online`` (no W&B server). ``make``, ``wandb sync`` and the benchmark lines are
not featviz commands and are left to their own tests and docs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_cli

README = (REPO / "README.md").read_text()
TINY = ["steps=1", "param.size=32", "progress=false", "metrics.views=2", "snapshots=[0,1]", "checkpoint_every=0"]
COMPOSE_ONLY = ("launcher=slurm", "logger.mode=online")
FLAG_SHRINK = {
    "dataset-examples": ["--size", "64", "--batch-size", "8", "--device", "cpu"],
    "maco-spectrum": ["--size", "16", "--crops", "4"],
    "train-denoiser": ["--size", "16", "--steps", "2", "--batch", "2", "--no-progress"],
    "patch-bank": ["--size", "16", "--count", "8"],
    "checkerboard": ["--size", "64"],
    "directions": ["--size", "32"],
}


def readme_commands() -> list[str]:
    """The ``python -m featviz`` lines of the README's bash blocks, continuations joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("python -m featviz"):
                commands.append(" ".join(shlex.split(line, comments=True)[3:]))
    return commands


COMMANDS = readme_commands()


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The paths the placeholders stand for, made by real runs."""
    root = tmp_path_factory.mktemp("readme")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(18):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    sweep = root / "class-sweep"
    proc = run_cli("-m", "objective=class_logit", "seed=0,1", "logger=none", *TINY, f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"root": root, "photos": photos, "sweep": sweep}


def test_the_readme_shows_every_kind_of_command() -> None:
    words = {c.split()[0] if c and not c.startswith(("-", "+")) and "=" not in c.split()[0] else "render" for c in COMMANDS}
    assert {"render", "layers", "report", "units", "checkerboard", "directions", "dataset-examples", "maco-spectrum"} <= words


@pytest.mark.parametrize("line", COMMANDS, ids=range(len(COMMANDS)))
def test_readme_command_runs(line: str, places: dict[str, Path], request: pytest.FixtureRequest) -> None:
    out = places["root"] / f"cmd{request.node.callspec.id}"
    args = shlex.split(line.replace("outputs/multirun/<date>/<time>", str(places["sweep"])))
    args = [str(places["photos"]) if a == "PHOTOS" else a.replace("RUN/", f"{places['sweep']}/") for a in args]
    word = args[0] if args and args[0] in FLAG_SHRINK or (args and args[0] in ("report", "layers", "--help")) else None
    if word == "--help" or word == "layers":
        extra: list[str] = []
    elif word == "report":
        extra = ["--out", str(out)]
    elif word in FLAG_SHRINK:
        extra = [*FLAG_SHRINK[word], "--out", str(out / "file.pt") if word in ("maco-spectrum", "train-denoiser", "patch-bank") else str(out)]
        if word in ("checkerboard", "directions"):
            extra += ["logger=none", "objective.layer=blocks.3"]
    else:  # a render (or units): shrink it, give it its own folder
        extra = [*TINY, f"hydra.run.dir={out}", f"hydra.sweep.dir={out}"]
        if "logger" not in line:
            extra.append("logger=none")
        if args and args[0] == "units":
            extra.append("units.list=[0,1]")
        if args and args[0] == "microscope":
            extra.append("microscope.units=[0,1]")
        if "+experiment=scorecard" in line:  # one stack, one seed, the photos as the reference
            extra += ["experiment/stack=pixel", "seed=0", f"metrics.reference={places['photos']}"]
        if "launcher=joblib" in line:
            extra.append("hydra.launcher.n_jobs=2")  # this machine has two cores; the README's 4 is for a bigger one
        if any(c in line for c in COMPOSE_ONLY):  # composed, launcher included, but not run: first sweep value only
            args = [a.split(",")[0] for a in args if a != "-m"]
            extra += ["--cfg", "all"]
    proc = run_cli(*args, *extra, timeout=600)
    assert proc.returncode == 0, f"{line}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
