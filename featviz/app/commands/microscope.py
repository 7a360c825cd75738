"""featviz microscope: every unit of some layers as shards of one multirun; featviz microscope-site: its site.

``conf/microscope.yaml`` sets ``hydra.mode=MULTIRUN`` and sweeps ``microscope.shard`` over
``range(0, microscope.shards)``, so the command is one multirun on whatever launcher is
chosen (basic: shards one after another; joblib, submitit, Slurm: in parallel). Each job is
one shard (:mod:`featviz.app.microscope.shard`), rendered in a child process like a render
job of a multirun (``isolate``), so a crash in native code fails that shard only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from featviz.app.config import CONF_SOURCE, to_plain
from featviz.app.microscope.shard import run_shard
from featviz.app.reporting import one_line, report
from featviz.errors import ConfigError, FeatvizError, Preempted
from featviz.rundir import RunLock
from featviz.tools.microscope_site import write_site


@hydra.main(version_base="1.3", config_path=CONF_SOURCE, config_name="microscope")
def main(cfg: DictConfig) -> dict[str, Any] | None:
    """``featviz microscope [overrides]``: one shard per job; a failed shard is recorded and the others go on."""
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    container = to_plain(cfg)
    overrides = list(hydra_cfg.overrides.task)
    shard = f"shard {container['microscope']['shard']}"
    try:
        with RunLock(out_dir):
            if cfg.get("isolate") is False:
                return run_shard(container, out_dir, overrides)
            from featviz.app.isolation import run_isolated

            return run_isolated(run_shard, (container, out_dir, overrides), out_dir, {"overrides": overrides, "config": container})
    except Preempted as exc:  # the process was told to stop, so the multirun stops too
        then = "its job's handler took over (under submitit: requeued; the requeued shard resumes)" if exc.handed_over else f"run the same command with hydra.sweep.dir={hydra_cfg.sweep.dir} to resume"
        print(f"featviz: preempted: {shard}: stopped by {exc.signal_name} at step {exc.step}/{exc.steps} of a batch; its finished batches are saved; {then}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except FeatvizError as exc:
        report("featviz microscope", f"{shard}: {exc}")
    except Exception as exc:  # a bug or OOM in one shard must not cost the others
        report("featviz microscope", f"{shard}: {type(exc).__name__}: {one_line(str(exc))} (in {out_dir / 'result.json'}); the other shards go on")
    return None


def site_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="(Re)write the static site of a `featviz microscope` sweep from its shards' saved units.")
    parser.add_argument("sweep", type=Path, help="the sweep folder of a `featviz microscope` run (outputs/microscope/<date>/<time>)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the site (default: SWEEP/site)")
    return parser


def run_site(args: argparse.Namespace) -> str:
    """``featviz microscope-site SWEEP [--out DIR]``: works while shards still run (it shows what is done)."""
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file; give a folder for the site (default: SWEEP/site)")
    return f"featviz: microscope site in {write_site(args.sweep, args.out)}"
