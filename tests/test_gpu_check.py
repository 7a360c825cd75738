"""benchmarks/gpu_check.py runs end to end on the CPU at tiny sizes, so it works the day a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_gpu_check_runs_every_part_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny", "--no-compile",
         "--pytest-k", "test_basic_objectives", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    errors = {name: part["error"] for name, part in report.items() if isinstance(part, dict) and part.get("error")}
    assert not errors, errors
    assert report["suite"]["passed"] >= 1 and report["suite"]["failed"] == []
    assert report["fork_server"]["cuda_safe"] and report["fork_server"]["built_shared_model"]
    assert [j["status"] for j in report["isolated_multirun"]["jobs"]] == ["completed", "completed"]
    assert report["microscope"]["exit_code"] == 0 and report["microscope"]["units_per_hour_wall"] > 0
    assert "lucent_s" in report["lucent"] or "skipped" in report["lucent"]
    assert [row["batch"] for row in report["batch_curve"]] == [1, 2]
    assert [(row["amp"], row["compile"]) for row in report["perf"]] == [("none", False), ("bf16", False)]
    assert all(row["seconds_per_step"] > 0 for row in report["batch_curve"] + report["perf"])
