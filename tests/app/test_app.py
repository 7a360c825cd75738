"""The command line as a user drives it: files, sweeps, and one-line errors."""

import json

import pytest

from conftest import run_cli

SMALL = ["logger=none", "progress=false", "param.size=32", "objective.layer=blocks.3", "transforms.jitter=2", "transforms.jitter_after=0", "transforms.resize=false", "metrics.views=0"]


def test_single_run_writes_everything(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(*SMALL, "steps=8", "snapshots=[0,4,8]", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    for name in ["final.png", "final_0.png", "metrics.jsonl", "result.json", "snapshots/step_0.png", "snapshots/step_4.png", "snapshots/step_8.png"]:
        assert (out / name).exists(), name
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(9))
    assert lines[-1]["objective"] > lines[0]["objective"]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed"
    assert result["config"]["objective"]["layer"] == "blocks.3"
    assert result["final"]["steps_per_s"] > 0
    assert "torch" in result["environment"]


def test_multirun_sweeps(tmp_path):
    proc = run_cli("-m", *SMALL, "steps=3", "seed=0,1", "param=pixel,fft", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    finals = sorted(tmp_path.glob("*/final.png"))
    assert len(finals) == 4
    kinds = {json.loads((p.parent / "result.json").read_text())["config"]["param"]["kind"] for p in finals}
    assert kinds == {"pixel", "fft"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=alexnet", "model.weights=none", "objective.layer=features.10", "transforms.resize=false", "transforms=none", "param.size=16"], "too small"),
        (["objective.layer=blocks.30"], "closest"),
        (["objective.unit=500"], "0..39"),
        (["steps=0"], "steps=0"),
        (["optimizer.lr=-1"], "optimizer.lr"),
        (["model.weights=/nonexistent/w.pth"], "does not exist"),
        (["model.name=effnet"], "unknown model"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, overrides, message):
    out = tmp_path / "run"
    proc = run_cli(*SMALL, "steps=2", *overrides, f"hydra.run.dir={out}")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("featviz: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (out / "final.png").exists()
    assert json.loads((out / "result.json").read_text())["status"] == "failed"


def test_layers_subcommand():
    proc = run_cli("layers", "+size=64")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("blocks.10 "))
    assert "112x4x4" in line
    assert any(x.startswith("logits") and "1000" in x for x in proc.stdout.splitlines())
