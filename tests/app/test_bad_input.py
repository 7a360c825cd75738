"""Bad input as a new user would type it: one clear error, a non-zero exit, no file that looks complete.

Layer typos, unit indices, image sizes, steps=0, lr and weights files are covered in
test_app.py and test_models.py; dataset folders in the dataset tests.
"""

import json
import os
import resource
import subprocess
import sys
from contextlib import contextmanager

import pytest
from PIL import Image

from conftest import REPO, run_cli
from featviz.errors import OutputError
from featviz.writer import inside

SMALL = ["logger=none", "progress=false", "++metrics.enabled=false", "param.size=32", "objective.layer=blocks.3", "steps=2"]


def _one_clear_error(proc, message):
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("featviz: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("checkpoint_every=-1", "checkpoint_every=-1 must be >= 0"),
    ],
)
def test_wrong_values_are_one_clear_error(tmp_path, override, message):
    out = tmp_path / "run"
    proc = run_cli(*SMALL, override, f"hydra.run.dir={out}")
    _one_clear_error(proc, message)
    assert json.loads((out / "result.json").read_text())["status"] == "failed"
    assert not (out / "final.png").exists()
    assert not (tmp_path.parent / "escape").exists()


def test_unknown_config_option_lists_the_known_ones(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(*SMALL, "param=fourier", f"hydra.run.dir={out}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["featviz: error: param=fourier is not one of the param options; the options are cppn, fft, generator, laplacian, maco, maco_vivid, pixel, rgba, shared_fft (featviz render --help lists every group)"]
    assert not out.exists()


def test_unreadable_checkpoint_in_the_run_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    _one_clear_error(run_cli(*SMALL, f"hydra.run.dir={out}"), "is not a readable featviz checkpoint")
    assert not (out / "final.png").exists()


def test_paths_built_from_config_stay_in_the_run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    assert inside(run, "snapshots", "step_4.png") == (run / "snapshots" / "step_4.png").resolve()
    with pytest.raises(OutputError, match="outside the run folder"):
        inside(run, "..", "elsewhere.png")
    (run / "planted").symlink_to(tmp_path)
    with pytest.raises(OutputError, match="outside the run folder"):
        inside(run, "planted", "x.png")


@contextmanager
def _tmpfs(path, options):
    """A small tmpfs at ``path`` (needs root); yields False where mounting is not allowed."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)


def test_read_only_output_folder(tmp_path):
    folder = tmp_path / "ro"
    with _tmpfs(folder, "ro,size=64k") as mounted:
        if not mounted:
            if os.geteuid() == 0:
                pytest.skip("root ignores permission bits and this machine does not allow mounting a read-only tmpfs")
            folder.chmod(0o555)
        proc = run_cli(*SMALL, f"hydra.run.dir={folder / 'run'}")
        _one_clear_error(proc, f"cannot write to the output folder {folder / 'run'}")
        assert not (folder / "run").exists()


def _assert_nothing_half_written(run):
    assert not (run / "final.png").exists()
    assert not list(run.rglob("*.tmp"))
    for png in run.rglob("*.png"):
        with Image.open(png) as image:
            image.verify()  # raises on a truncated file
    text = (run / "metrics.jsonl").read_text()
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            json.loads(line)
    if (run / "result.json").exists():
        assert json.loads((run / "result.json").read_text())["status"] == "failed"


def test_disk_full_while_writing_snapshots(tmp_path):
    """A real full filesystem (a 256 KiB tmpfs) where possible, else a per-process file size limit."""
    folder = tmp_path / "small"
    every_step = "snapshots=[" + ",".join(map(str, range(41))) + "]"
    overrides = ["logger=none", "progress=false", "++metrics.enabled=false", "objective.layer=blocks.3", "steps=40", every_step]
    with _tmpfs(folder, "size=256k") as mounted:
        run = folder / "run"
        if mounted:
            proc = run_cli(*overrides, "param.size=64", f"hydra.run.dir={run}")
            message = "No space left on device"
        else:  # RLIMIT_FSIZE: writing past 20 KB fails with EFBIG instead of ENOSPC
            limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # noqa: E731
            env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
            proc = subprocess.run([sys.executable, "-m", "featviz", *overrides, "param.size=128", f"hydra.run.dir={run}"],
                                  cwd=REPO, env=env, capture_output=True, text=True, preexec_fn=limit, timeout=300)
            message = "File too large"
        _one_clear_error(proc, message)
        assert "cannot write" in proc.stderr and "snapshots/step_" in proc.stderr
        _assert_nothing_half_written(run)
