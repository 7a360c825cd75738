"""The microscope: shards of one multirun, resumed after a kill to the same bytes, and its site.

The must-show test runs the real CLI three times on 8 units of ``blocks.1`` (32 px, 6
steps, batches of 2, 2 shards under the basic launcher): once through, once killed with
SIGKILL (the whole process group: the job process and its render child) right after shard
0 saved its first batch, and that sweep rerun. Its site must hold the same image files, byte
for byte, as the uninterrupted one, and the rerun must have skipped the saved batch. The
site is then opened in headless Chromium (skipped without a browser).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_cli
from featviz.app.config import compose, to_plain
from featviz.app.microscope.plan import layer_units, plan_batches, shard_batches
from featviz.app.microscope.shard import run_shard
from featviz.errors import CheckpointError, ConfigError, UnitOutOfRangeError
from featviz.tools.microscope_files import read_units
from featviz.tools.microscope_site import write_site
from test_report_html import BROWSER, img_sources, screenshot

TINY = ["steps=6", "param.size=32", "transforms.resize=false", "progress=false", "metrics.views=2", "microscope.layers=[blocks.1]", "microscope.batch=2"]
KILLABLE = [*TINY, "microscope.units=[0,1,2,3,4,5,6,7]", "microscope.shards=2"]


def site_images(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*.png"))}


def shard_cfg(*overrides: str) -> dict:
    return to_plain(compose([*TINY, "microscope.units=[0,1,2]", *overrides], "microscope"))


def test_units_command_keeps_the_model_group():
    """conf/units.yaml used to list its schema after `config`, whose defaults overwrote model=NAME."""
    cfg = compose(["model=efficientnet_lite1", "units.batch=4"], "units")
    assert cfg.model.name == "efficientnet_lite1" and cfg.units.batch == 4 and cfg.perf.fold_bn
    micro = compose(["model=efficientnet_lite1", "microscope.shards=3"], "microscope")
    assert micro.model.name == "efficientnet_lite1" and micro.microscope.shards == 3 and micro.logger.kind.name == "none"


def test_plan_deals_batches_round_robin_and_checks_units(lite0):
    planned = layer_units(lite0, ["blocks.1", "blocks.3"], None, 64)
    assert [len(v) for v in planned.values()] == [24, 40]
    batches = plan_batches(planned, 16)
    assert [(b.layer, len(b.units)) for b in batches] == [("blocks.1", 16), ("blocks.1", 8), ("blocks.3", 16), ("blocks.3", 16), ("blocks.3", 8)]
    shards = [shard_batches(batches, k, 2) for k in range(2)]
    assert [b.index for b in shards[0]] == [0, 2, 4] and [b.index for b in shards[1]] == [1, 3]
    with pytest.raises(UnitOutOfRangeError, match="0..23"):
        layer_units(lite0, ["blocks.1"], [3, 24], 64)
    with pytest.raises(ConfigError, match="microscope.shard=2"):
        shard_batches(batches, 2, 2)
    with pytest.raises(ConfigError, match="twice"):
        layer_units(lite0, ["blocks.1", "blocks.1"], None, 64)


def test_bad_microscope_values_are_one_line_errors(lite0, tmp_path):
    with pytest.raises(ConfigError, match="microscope.facets=1"):
        run_shard(shard_cfg("microscope.facets=1"), tmp_path / "a", model=lite0)
    with pytest.raises(ConfigError, match="must be >= 1"):
        from featviz.app.build import check_ranges

        check_ranges(shard_cfg("microscope.batch=0"))
    assert json.loads((tmp_path / "a" / "result.json").read_text())["status"] == "failed"


def test_shard_saves_units_then_skips_them_and_refuses_another_config(lite0, tmp_path):
    cfg, out = shard_cfg("microscope.facets=2"), tmp_path / "0"
    final = run_shard(cfg, out, model=lite0)
    assert final["units"] == 3 and final["rendered_now"] == 3 and final["units_per_hour"] > 0
    entries = read_units(tmp_path)
    assert [e.unit for e in entries] == [0, 1, 2]
    assert all(e.files.path("facets.png").is_file() and set(e.record["metrics"]) >= {"activation", "robust", "hf_share", "tv"} for e in entries)
    assert Image.open(entries[0].files.path("facets.png")).size == (2 * 32 + 3 * 2, 32 + 2 * 2)  # two facets, tiled
    assert run_shard(cfg, out, model=lite0) == final  # completed: nothing redone
    (out / "result.json").unlink()  # as if killed after its last batch: every batch is skipped
    no_site = {**cfg, "microscope": {**cfg["microscope"], "site": False}}  # how it is merged, not what it renders
    assert run_shard(no_site, out, model=lite0)["skipped"] == 3
    (out / "result.json").unlink()
    with pytest.raises(CheckpointError, match="steps"):
        run_shard({**cfg, "steps": 7}, out, model=lite0)


def test_dataset_examples_per_unit(lite0, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.random((40, 40, 3)) * 255 * (i + 1) / 5).astype("uint8")).save(photos / f"p{i}.png")
    run_shard(shard_cfg(f"microscope.reference={photos}", "microscope.examples=2"), tmp_path / "0", model=lite0)
    entry = read_units(tmp_path)[1]
    top, bottom = entry.record["examples"]["top"], entry.record["examples"]["bottom"]
    assert len(top) == 2 and top[0]["score"] >= top[1]["score"] >= bottom[1]["score"] >= bottom[0]["score"]
    assert Image.open(entry.files.path("top.png")).size[0] > 2 * 96
    assert "exemplar_ratio" in entry.record["metrics"]
    write_site(tmp_path)
    page = (tmp_path / "site" / "layers" / "blocks.1" / "1.html").read_text()
    assert "Dataset examples: most activating" in page and Path(top[0]["path"]).name in page


def _kill_after_first_batch(sweep: Path) -> None:
    """Start the multirun in its own process group; SIGKILL the group once shard 0 saved a batch."""
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    cmd = [sys.executable, "-m", "featviz", "microscope", *KILLABLE, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not list((sweep / "0" / "microscope" / "blocks.1").glob("*.json")):
            assert proc.poll() is None and time.monotonic() < deadline, "the multirun ended before its first batch was saved"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_killed_shard_resumes_to_the_same_site(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = run_cli("microscope", *KILLABLE, f"hydra.sweep.dir={whole}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "microscope site in" in proc.stdout

    _kill_after_first_batch(killed)
    saved = sorted(p.name for p in (killed / "0" / "microscope" / "blocks.1").glob("*.json"))
    assert 2 <= len(saved) < 4 and not (killed / "0" / "result.json").exists(), saved  # stopped mid-shard
    proc = run_cli("microscope", *KILLABLE, f"hydra.sweep.dir={killed}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((killed / "0" / "result.json").read_text())["final"]
    assert final["skipped"] == 2 and final["units"] == 4, final  # the saved batch was not rendered again

    reference, resumed = site_images(whole / "site"), site_images(killed / "site")
    assert len(reference) == 8 and resumed == reference  # the same files, byte for byte
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["counts"] == {"completed": 2}

    if BROWSER is None:
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium: apt-get install -y chromium)")
    site = shutil.copytree(killed / "site", tmp_path / "elsewhere")  # the site must not need the sweep
    for page in [site / "index.html", site / "layers" / "blocks.1" / "index.html", site / "layers" / "blocks.1" / "5.html"]:
        sources = img_sources(page)
        assert sources and all((page.parent / s).is_file() for s in sources), (page, sources)
    layer = site / "layers" / "blocks.1" / "index.html"
    screenshot(layer, tmp_path / "shot.png", (900, 700))
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("RGB")).astype(float)
    assert ((shot.min(axis=2) > 60) & (shot.max(axis=2) < 200)).mean() > 0.05  # the tiles' mid tones painted (text is dark, page white)
    # The sort script, run by the browser: #sort=0:desc orders the tiles by activation, highest first.
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", layer.resolve().as_uri() + "#sort=0:desc"],
                         capture_output=True, text=True, timeout=120).stdout
    shown = [int(u) for u in re.findall(r'class="tile" href="(\d+)\.html"', dom)]
    activation = {e.unit: e.record["metrics"]["activation"] for e in read_units(killed)}
    assert shown == sorted(activation, key=lambda u: -activation[u]), shown


def test_one_wandb_run_per_shard_with_its_unit_table(tmp_path):
    from test_tracking import ReadRun

    sweep = tmp_path / "sweep"
    proc = run_cli("microscope", *TINY, "microscope.units=[0,1,2]", "microscope.shards=2", "logger=wandb", "logger.sweep_table=false", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    groups = set()
    for shard, units in (("0", [0, 1]), ("1", [2])):
        read = ReadRun.of(sweep / shard)
        (run,) = read.of_type("run")
        groups.add(run["run_group"])
        assert (run["display_name"], run["job_type"]) == (f"shard={shard}/2", "microscope-shard")
        assert [h["microscope/units.nrows"] for h in read.history] == [len(units)]
        (artifact,) = read.of_type("artifact")
        files = {entry["path"]: Path(entry["local_path"]) for entry in artifact["manifest"]["contents"]}
        table = json.loads(files["microscope/units.table.json"].read_text())
        rows = [dict(zip(table["columns"], row)) for row in table["data"]]
        assert [r["unit"] for r in rows] == units and all(r["layer"] == "blocks.1" and r["image"]["path"] in files for r in rows)
        record = json.loads((sweep / shard / "microscope" / "blocks.1" / f"{units[0]}.json").read_text())
        assert rows[0]["activation"] == pytest.approx(record["metrics"]["activation"])
        assert read.state["exit_code"] == 0 and read.state["summary"]["microscope/units"] == len(units)
    assert len(groups) == 1


def test_sigterm_stops_a_shard_as_preempted(tmp_path):
    """A stop signal (Slurm's preemption, SIGTERM) ends the batch cleanly: the finished batches stay, the shard says preempted."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    cmd = [sys.executable, "-m", "featviz", "microscope", *TINY, "steps=40", "microscope.units=[0,1,2,3,4,5]", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((sweep / "0" / "microscope" / "blocks.1").glob("*.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "the shard ended before its first batch was saved"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to the job process: it passes the signal on to its render child
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "preempted: shard 0: stopped by SIGTERM" in err and f"hydra.sweep.dir={sweep}" in err
    result = json.loads((sweep / "0" / "result.json").read_text())
    assert result["status"] == "preempted"
    assert sorted(p.name for p in (sweep / "0" / "microscope" / "blocks.1").glob("*.json")) == ["0.json", "1.json"]
