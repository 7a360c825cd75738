"""W&B tracking, read back from the offline run files (no network, no mocks).

The multirun test runs the real CLI once (2 jobs, 6 steps, 32 px) and every assertion
about it reads what W&B wrote, through ``wandb leet inspect --json``. The other tests run
the render loop in-process with the logger and provoke real W&B failures.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from featviz.errors import ConfigError, FeatvizError
from featviz.objectives.units import Channel
from featviz.params.fourier import FFTImage
from featviz.callbacks import Callback, RenderContext, StepRecord
from featviz.render import render
from featviz.app.tracking import build_logger
from featviz.app.tracking.session import run_name, sweep_group
from featviz.app.tracking.sweep_table import EFFECTS_KEY, TABLE_KEY, collect_jobs
from featviz.transforms import build_transforms

REPO = Path(__file__).resolve().parents[2]
WANDB_CLI = Path(sys.executable).with_name("wandb")

# Runs `python -m featviz` with an audit hook that reports any attempt to reach the
# network (DNS lookups, non-local sockets) on stderr, so the test can assert there was none.
DRIVER = """
import socket, sys
def hook(event, args):
    if event == "socket.getaddrinfo" or (event == "socket.connect" and args[0].family != socket.AF_UNIX):
        print(f"NETWORK-ATTEMPT {event} {args[1:]!r}", file=sys.stderr)
sys.addaudithook(hook)
sys.argv = ["featviz", *sys.argv[1:]]
from featviz.__main__ import main
main()
"""


def records(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of an offline run, one dict each."""
    out = subprocess.run([str(WANDB_CLI), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def final_state(run_dir: Path) -> dict[str, Any]:
    """The run's end state: exit code, config, summary."""
    out = subprocess.run([str(WANDB_CLI), "leet", "inspect", "--summary", "--json", str(run_dir)], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def of_type(recs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r[kind] for r in recs if r["type"] == kind]


def only_run_dir(parent: Path) -> Path:
    runs = sorted((parent / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


@dataclass
class ReadRun:
    """One offline run, read back once (each ``wandb`` CLI call costs a second or two)."""

    dir: Path
    records: list[dict[str, Any]]
    state: dict[str, Any]

    @classmethod
    def of(cls, parent: Path) -> ReadRun:
        run_dir = only_run_dir(parent)
        return cls(run_dir, records(run_dir), final_state(run_dir))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return of_type(self.records, kind)

    @property
    def history(self) -> list[dict[str, Any]]:
        return [h["item"] for h in self.of_type("history")]


@dataclass
class Sweep:
    dir: Path
    jobs: dict[str, ReadRun]
    table_run: ReadRun


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """One real 2-job multirun across the TV weight, with W&B offline (the default)."""
    sweep_dir = tmp_path_factory.mktemp("sweep") / "tv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # offline must come from our config
    args = [
        "-m",
        "logger=wandb",
        "param.size=32",
        "steps=6",
        "objective.layer=blocks.2",
        "snapshots=[0,3,6]",
        "activation_every=2",
        "tags=[tracking-test]",
        "progress=false",
        "metrics.views=0",  # the final-image metrics cost more than the render here; their cheap ones stay
        "metrics.eval_model=null",
        "regularizer.tv=0,0.5",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = subprocess.run([sys.executable, "-c", DRIVER, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "NETWORK-ATTEMPT" not in proc.stderr, proc.stderr[-3000:]
    output = proc.stderr + proc.stdout
    assert output.count("wandb sync") == 1  # one line for the whole sweep, not one per job
    assert f"wandb sync {sweep_dir}/*/wandb/offline-run-* {sweep_dir}/wandb/offline-run-*" in output
    return Sweep(sweep_dir, {job: ReadRun.of(sweep_dir / job) for job in ("0", "1")}, ReadRun.of(sweep_dir))


def test_per_step_curve_is_complete_and_rising(sweep: Sweep) -> None:
    for run in sweep.jobs.values():
        rows = run.history
        curve = [r for r in rows if "opt/objective" in r]
        assert [r["opt/step"] for r in curve] == list(range(7))
        assert all({"opt/loss", "opt/lr"} <= r.keys() for r in curve)
        assert curve[-1]["opt/objective"] > curve[0]["opt/objective"]
        activation = {r["opt/step"]: r["opt/activation"] for r in rows if "opt/activation" in r}
        assert sorted(activation) == [0, 2, 3, 4, 6]  # every 2 steps, plus snapshots and the last step
        assert activation[6] > activation[0]
    assert all("opt/reg/tv" in r for r in sweep.jobs["1"].history)
    metrics = [json.loads(line) for line in (sweep.dir / "0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["opt/objective"] for r in sweep.jobs["0"].history] == pytest.approx([m["objective"] for m in metrics])


def test_images_at_exactly_the_snapshot_steps_with_files(sweep: Sweep) -> None:
    run = sweep.jobs["0"]
    rows = run.history
    snaps = {r["opt/step"]: r for r in rows if "images/snapshot._type" in r}
    assert sorted(snaps) == [0, 3, 6]
    finals = [r for r in rows if "images/final._type" in r]
    assert [r["opt/step"] for r in finals] == [6]
    for key, row in [*(("images/snapshot", r) for r in snaps.values()), ("images/final", finals[0])]:
        assert row[f"{key}._type"] == "image-file"
        assert f"step {row['opt/step']}" in row[f"{key}.caption"]
        assert (row[f"{key}.width"], row[f"{key}.height"]) == (32, 32)
        assert (run.dir / "files" / row[f"{key}.path"]).is_file()
    metric_defs = run.of_type("metric")
    assert {m.get("glob_name"): m.get("step_metric") for m in metric_defs if m.get("glob_name")} == {"opt/*": "opt/step", "images/*": "opt/step"}
    peaks = {m["name"]: m for m in metric_defs if m.get("name") in ("opt/objective", "opt/activation")}
    assert {k: (m["step_metric"], m["summary"]) for k, m in peaks.items()} == {k: ("opt/step", {"max": True}) for k in ("opt/objective", "opt/activation")}


def test_run_identity_config_and_summary(sweep: Sweep) -> None:
    groups = set()
    for job, read in sweep.jobs.items():
        (run,) = read.of_type("run")
        groups.add(run["run_group"])
        result = json.loads((sweep.dir / job / "result.json").read_text())
        assert run["job_type"] == "channel"
        assert run["tags"] == ["tracking-test"]
        assert run["display_name"] == f"tv={'0' if job == '0' else '0.5'}"  # only the swept key, shortened
        state = read.state
        assert (state["state"], state["exit_code"]) == ("finished", 0)
        assert state["config"]["overrides"] == result["overrides"]
        assert state["config"]["regularizer"]["tv"] == result["config"]["regularizer"]["tv"]
        summary = state["summary"]
        assert {"objective", "objective_max", "wall_time_s", "steps_per_s"} <= result["final"].keys()
        for key, value in result["final"].items():  # including what other features add to result.final
            assert summary[f"final/{key}"] == pytest.approx(value, nan_ok=True)
        assert summary["status"] == "completed"
        curve = [r for r in read.history if "opt/objective" in r]
        assert summary["opt/objective"] == {"max": pytest.approx(max(r["opt/objective"] for r in curve))}
        assert summary["opt/activation"] == {"max": pytest.approx(max(r["opt/activation"] for r in read.history if "opt/activation" in r))}
    assert groups == {sweep_group(sweep.dir)}


def test_sweep_table_has_one_row_per_job(sweep: Sweep) -> None:
    read = sweep.table_run
    (run,) = read.of_type("run")
    assert (run["run_group"], run["job_type"]) == (sweep_group(sweep.dir), "sweep-summary")
    assert [h[f"{TABLE_KEY}.nrows"] for h in read.history] == [2]
    (artifact,) = [a for a in read.of_type("artifact") if any(e["path"] == f"{TABLE_KEY}.table.json" for e in a["manifest"]["contents"])]
    files = {entry["path"]: Path(entry["local_path"]) for entry in artifact["manifest"]["contents"]}
    assert all(path.is_relative_to(read.dir) and path.is_file() for path in files.values())  # staged in the run `wandb sync` uploads
    assert sum(p.endswith(".png") for p in files) == 2  # each job's final image
    table = json.loads(files[f"{TABLE_KEY}.table.json"].read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [r["job"] for r in rows] == ["0", "1"]
    for row in rows:
        result = json.loads((sweep.dir / row["job"] / "result.json").read_text())
        assert row["overrides"] == ",".join(result["overrides"])
        assert row["status"] == "completed"
        assert row["final/objective"] == pytest.approx(result["final"]["objective"])
        assert row["final_image"]["path"] in files
        assert row["wandb_run"] == sweep.jobs[row["job"]].dir.name.rsplit("-", 1)[-1]
    assert read.state["exit_code"] == 0


def test_sweep_table_run_logs_the_effects_table(sweep: Sweep) -> None:
    """The report's paired comparisons, as a W&B table beside the jobs table (one pair here: n=1, and it says so)."""
    read = sweep.table_run
    (artifact,) = [a for a in read.of_type("artifact") if any(e["path"] == f"{EFFECTS_KEY}.table.json" for e in a["manifest"]["contents"])]
    files = {entry["path"]: Path(entry["local_path"]) for entry in artifact["manifest"]["contents"]}
    table = json.loads(files[f"{EFFECTS_KEY}.table.json"].read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    objective = next(r for r in rows if r["metric"] == "objective")
    assert (objective["setting"], objective["value"], objective["baseline"], objective["n"]) == ("regularizer.tv", "0.5", "0", "1")
    assert "too few" in objective["note"]


# --- in-process: failures -------------------------------------------------------------------


def small_render(model: Any, callbacks: list[Callback], steps: int = 4, batch: int = 1) -> Any:
    g = torch.Generator().manual_seed(0)
    param = FFTImage(32, batch=batch, generator=g)
    return render(model, Channel("blocks.2", 5), param=param, transforms=build_transforms(jitter=2, resize=48), steps=steps, snapshots=[0, steps], callbacks=callbacks, device="cpu", generator=g)


CONFIG = {"objective": {"kind": "channel"}, "tags": []}


@pytest.mark.parametrize("problem", ["bad_project", "dir_not_creatable"])
def test_wandb_failure_never_stops_the_render(lite0: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, problem: str) -> None:
    if problem == "bad_project":
        logger_cfg, out_dir = {"kind": "wandb", "project": "no/slashes"}, tmp_path / "run"
    else:
        (tmp_path / "a_file").write_text("x")
        logger_cfg, out_dir = {"kind": "wandb"}, tmp_path / "a_file" / "run"
    logger = build_logger(logger_cfg, CONFIG, out_dir, [])
    with caplog.at_level(logging.WARNING, logger="featviz"):
        result = small_render(lite0, [logger])
    assert result.steps == 4 and len(result.history) == 5
    assert result.images.equal(small_render(lite0, []).images)  # tracking never touches the random stream
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "W&B init failed" in warnings[0] and "render goes on" in warnings[0]
    assert logger.disabled and logger.run is None


class FailAt(Callback):
    """Raises a user-facing error at one step, like a NaN loss would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, ctx: RenderContext, record: StepRecord) -> None:
        if record.step == self.step:
            raise FeatvizError(f"stop at step {record.step}")


def test_failed_render_finishes_its_run_and_the_next_one_is_separate(lite0: Any, tmp_path: Path) -> None:
    first = build_logger({"kind": "wandb"}, CONFIG, tmp_path / "a", ["objective.unit=5"])
    with pytest.raises(FeatvizError, match="stop at step 2"):
        small_render(lite0, [first, FailAt(2)])
    failed_dir = only_run_dir(tmp_path / "a")
    before = records(failed_dir)
    state = final_state(failed_dir)
    assert (state["state"], state["exit_code"]) == ("failed", 1)
    assert state["summary"]["status"] == "failed" and "stop at step 2" in state["summary"]["error"]
    assert [h["item"]["opt/step"] for h in of_type(before, "history")] == [0, 1, 2]

    second = build_logger({"kind": "wandb"}, CONFIG, tmp_path / "b", [])
    small_render(lite0, [second], batch=2)
    assert records(failed_dir) == before  # nothing of the second render leaked into the first run
    ok = ReadRun.of(tmp_path / "b")
    rows = ok.history
    assert [r["opt/step"] for r in rows] == [0, 1, 2, 3, 4]
    snap = rows[0]  # a batch logs one image per element
    assert snap["images/snapshot._type"] == "images/separated" and snap["images/snapshot.count"] == 2
    assert all((ok.dir / "files" / f).is_file() for f in snap["images/snapshot.filenames"])
    assert ok.state["exit_code"] == 0


class Say(Callback):
    """Prints one line at one step, as a warning printed mid-run would."""

    def on_step(self, ctx: RenderContext, record: StepRecord) -> None:
        if record.step == 2:
            print(f"console line at step {record.step}", flush=True)


def test_console_output_is_kept_in_the_run(lite0: Any, tmp_path: Path) -> None:
    logger = build_logger({"kind": "wandb"}, CONFIG, tmp_path, [])
    small_render(lite0, [logger, Say()])
    read = ReadRun.of(tmp_path)
    lines = [r["line"] for r in read.of_type("output_raw")]
    assert any("console line at step 2" in line for line in lines), lines
    assert "console line at step 2" in (read.dir / "files" / "output.log").read_text()


# --- small pure pieces ------------------------------------------------------------------------


def test_run_name_is_the_swept_keys_shortened() -> None:
    assert run_name(["regularizer.tv=0.5", "logger.mode=online", "+logger.x=1", "steps=6"]) == "tv=0.5,steps=6"
    assert run_name(["logger=wandb"]) == "default"
    swept = ["experiment/family", "spectrum.level", "seed"]
    assert run_name(["+experiment=spectrum", "experiment/family=tv", "spectrum.level=weak", "seed=1", "steps=6"], swept) == "family=tv,level=weak,seed=1"
    assert run_name(["a.unit=1", "b.unit=2"], ["a.unit", "b.unit"]) == "a.unit=1,b.unit=2"  # clashing short names stay long
    assert len(run_name([f"k{i}=value" for i in range(30)])) == 64


def test_bad_logger_config_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="offline"):
        build_logger({"kind": "wandb", "mode": "sometimes"}, CONFIG, tmp_path, [])
    with pytest.raises(ConfigError, match="log_every"):
        build_logger({"kind": "wandb", "log_every": 0}, CONFIG, tmp_path, [])
    with pytest.raises(ConfigError, match="logger=none"):
        build_logger({"kind": "mlflow"}, CONFIG, tmp_path, [])


def test_collect_jobs_orders_numerically_and_keeps_failures(tmp_path: Path) -> None:
    for job, status in [("10", "completed"), ("2", "failed"), ("0", "completed")]:
        (tmp_path / job).mkdir()
        result = {"status": status, "overrides": [f"seed={job}"], "final": {"objective": 1.0} if status == "completed" else {}}
        if status == "failed":
            result["error"] = {"type": "UnitOutOfRangeError", "message": "channel 999 is out of range"}
        (tmp_path / job / "result.json").write_text(json.dumps(result))
    jobs = collect_jobs(tmp_path)
    assert [j.job for j in jobs] == ["0", "2", "10"]
    assert jobs[1].status == "failed" and "channel 999" in jobs[1].error and jobs[1].final_image is None
