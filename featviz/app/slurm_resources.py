"""Before a ``launcher=slurm`` sweep is submitted: does the partition have what the jobs ask for?

``sbatch`` refuses a job that asks for GPUs, CPUs or memory no node of the partition has, and
hydra-submitit-launcher reports that as a 40-line traceback ending in "Invalid generic
resource (gres) specification" or "Requested node configuration is not available". This
Hydra callback asks ``sinfo`` first and says it in one line, with the override that fixes it.
When ``sinfo`` is missing or fails, nothing is checked and sbatch has the last word.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class Node:
    """One node of a partition as ``sinfo`` lists it."""

    partition: str
    default: bool
    cpus: int
    mem_mb: int
    gpus: int


def gres_gpus(gres: str) -> int:
    """GPUs in a ``sinfo`` GRES field: ``gpu:4``, ``gpu:a100:4(S:0-1)``, ``gpu:2,shard:8``, ``(null)``."""
    total = 0
    for item in gres.split(","):
        fields = re.sub(r"\(.*?\)", "", item).split(":")
        if fields[0] == "gpu" and len(fields) > 1 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def parse_sinfo(text: str) -> list[Node]:
    """Rows of ``sinfo -h -N -o %P|%c|%m|%G`` (the default partition is marked with ``*``)."""
    nodes = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[1].isdigit():
            continue
        mem = re.match(r"\d+", parts[2])
        nodes.append(Node(parts[0].rstrip("*"), parts[0].endswith("*"), int(parts[1]), int(mem.group()) if mem else 0, gres_gpus(parts[3])))
    return nodes


def _int(value: Any) -> int:
    return int(value) if value not in (None, "") else 0


def shortfalls(launcher: dict[str, Any], nodes: list[Node]) -> list[str]:
    """What the launcher settings ask for that no node of their partition has (empty: all fits)."""
    partition = launcher.get("partition")
    mine = [n for n in nodes if n.partition == partition] if partition else [n for n in nodes if n.default]
    if not mine:
        names = sorted({n.partition for n in nodes})
        what = f"partition {partition!r} is not" if partition else "no default partition is"
        return [f"{what} on this cluster (sinfo lists {', '.join(names) or 'none'}); set hydra.launcher.partition=NAME"]
    name = mine[0].partition
    tasks = max(1, _int(launcher.get("tasks_per_node")))
    gpus = max(_int(launcher.get("gpus_per_node")), _int(launcher.get("gpus_per_task")) * tasks)
    cpus = _int(launcher.get("cpus_per_task")) * tasks
    mem_mb = _int(launcher.get("mem_gb")) * 1024
    most = Node(name, False, max(n.cpus for n in mine), max(n.mem_mb for n in mine), max(n.gpus for n in mine))
    problems = []
    if gpus > most.gpus:
        have = f"at most {most.gpus} GPUs per node" if most.gpus else "no GPUs"
        fix = "hydra.launcher.gpus_per_node=null (CPU jobs)" if not most.gpus else f"hydra.launcher.gpus_per_node={most.gpus} or less"
        problems.append(f"the jobs ask for {gpus} GPU(s) per node but partition {name} has {have}; set {fix}")
    if cpus > most.cpus:
        problems.append(f"the jobs ask for {cpus} CPUs per node but partition {name} has at most {most.cpus}; set hydra.launcher.cpus_per_task={most.cpus // tasks} or less")
    if most.mem_mb and mem_mb > most.mem_mb:
        problems.append(f"the jobs ask for {mem_mb // 1024} GB per node but partition {name} has at most {most.mem_mb // 1024} GB; set hydra.launcher.mem_gb={most.mem_mb // 1024} or less")
    return problems


class SlurmResourceCheck(Callback):
    """Hydra callback (``conf/launcher/slurm.yaml``): refuse, in one line, a sweep the partition cannot run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sinfo = shutil.which("sinfo")
        if sinfo is None:
            return
        try:
            out = subprocess.run([sinfo, "-h", "-N", "-o", "%P|%c|%m|%G"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return
        nodes = parse_sinfo(out.stdout) if out.returncode == 0 else []
        if not nodes:
            return
        launcher = OmegaConf.to_container(config.hydra.launcher, resolve=True)
        assert isinstance(launcher, dict)
        problems = shortfalls(launcher, nodes)
        if problems:
            print(f"featviz: error: launcher=slurm: {'; '.join(problems)}", file=sys.stderr)
            sys.exit(1)
