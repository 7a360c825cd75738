"""Run featviz multiruns against a :class:`local_slurm.LocalSlurm` and wait for their events.

Every wait is for an event (a step in ``metrics.jsonl``, a job state in ``squeue``, the
command's exit), never a fixed sleep; timeouts only bound a wait that went wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from local_slurm import LocalSlurm, wait_for

#: What every test job asks Slurm for: one CPU (one torch thread, so bytes match a local
#: ``threads=1`` run), a little memory, and a time limit far from the test's length.
SLURM = ["launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]
#: A small render: 32 px, an early layer, no final-image metrics.
SMALL = ["param.size=32", "objective.layer=blocks.3", "transforms.jitter=2", "transforms.jitter_after=0",
         "progress=false", "++metrics.enabled=false"]


class Multirun:
    """``python -m featviz [command] -m ARGS hydra.sweep.dir=SWEEP`` in the background, against ``cluster``.

    ``command`` is a subcommand (``microscope``) or empty for a render sweep. Its output goes
    to ``<sweep>.out`` / ``<sweep>.err`` beside the sweep folder.
    """

    def __init__(self, cluster: LocalSlurm, sweep: Path, *args: str, command: str = "") -> None:
        self.cluster, self.sweep = cluster, Path(sweep)
        self.sweep.parent.mkdir(parents=True, exist_ok=True)
        self.out, self.err = self.sweep.with_suffix(".out"), self.sweep.with_suffix(".err")
        argv = [sys.executable, "-m", "featviz", *([command] if command else ["-m"]), *args, f"hydra.sweep.dir={self.sweep}"]
        env = {**cluster.env, "HYDRA_FULL_ERROR": "0"}
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, cwd=self.sweep.parent, env=env, stdout=out, stderr=err)

    @property
    def stderr(self) -> str:
        return self.err.read_text()

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    def _ended(self) -> str | None:
        """A reason to stop waiting for a job event: the multirun itself has ended."""
        if self.proc.poll() is None:
            return None
        return f"the multirun ended with code {self.proc.returncode}: {self.stderr[-2000:]}"

    def wait(self, timeout: float = 300) -> int:
        """The multirun's exit code, once it has ended (its jobs, then the summary)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TimeoutError(f"the multirun in {self.sweep} did not end within {timeout:.0f} s; squeue: {self.cluster.run('squeue', check=False).stdout}") from None

    def job_id(self, num: int, state: str = "RUNNING", timeout: float = 120) -> str:
        """Slurm's id of job ``num`` of this sweep (``12_3``, or ``12`` for a one-job sweep) once it is in ``state``."""

        def find() -> str | None:
            rows = self.cluster.run("squeue", "-h", "-r", "-o", "%i|%K|%T|%o", check=False).stdout.splitlines()
            for row in rows:
                job, task, found, script = row.split("|", 3)
                if script.startswith(f"{self.sweep}/") and task in (str(num), "N/A" if num == 0 else str(num)) and found == state:
                    return job
            return None

        return wait_for(f"job {num} of {self.sweep} to be {state}", find, timeout, poll=0.2, failed=self._ended)

    def wait_step(self, num: int, step: int, timeout: float = 120) -> None:
        """Until job ``num`` has recorded ``step`` in its metrics.jsonl (it is mid-run)."""
        metrics = self.sweep / str(num) / "metrics.jsonl"

        def reached() -> bool:
            if not metrics.is_file():
                return False
            lines = metrics.read_text().splitlines()
            return any(json.loads(line).get("step", -1) >= step for line in lines[-3:] if line.endswith("}"))

        wait_for(f"job {num} of {self.sweep} to reach step {step}", reached, timeout, poll=0.05, failed=self._ended)

    def result(self, num: int) -> dict[str, Any]:
        return json.loads((self.sweep / str(num) / "result.json").read_text())

    def summary(self) -> dict[str, Any]:
        return json.loads((self.sweep / "summary.json").read_text())

    def sacct_state(self, job: str) -> str:
        """The job's state as accounting recorded it (what submitit reads)."""
        out = self.cluster.run("sacct", "-n", "-X", "-P", "-o", "State", "-j", job, check=False).stdout.split()
        return out[0] if out else ""
