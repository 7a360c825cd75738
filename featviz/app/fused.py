"""A fused sweep (``launcher=fused``): a multirun's compatible jobs as packs, each one batched optimization.

The Hydra plugin (``hydra_plugins/featviz_fused``) hands its ``launch`` here. Every job is
composed and given its folder and ``.hydra/`` record exactly as the basic launcher would
(Hydra's own ``run_job``, with a task that only collects the resolved config); then the
jobs that can share a forward pass (:func:`pack_key`: same network, ``perf`` options and
device) are cut into packs of at most ``max_images`` images per step (:func:`plan_packs`),
and each pack is rendered by :func:`featviz.app.pack.run_pack`: on this machine one after
another, each in a child process (a native crash fails that pack's jobs, recorded with the
pack's id, and the sweep goes on), or on Slurm as the tasks of one job array.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from featviz.app.config import to_plain
from featviz.app.pack import JobSpec, Pack, crashed, pack_record, run_pack_lines
from featviz.errors import ConfigError, FeatvizError, Preempted
from featviz.rundir import parse_overrides

log = logging.getLogger("featviz")

#: At most this many images per step in a CPU pack by default: throughput on 2 cores rose from
#: 43.6 images/s (1 job) to 60.5 (16 jobs) and fell to 46-47 at 32-64 (the step's activations
#: leave the caches; benchmarks/results/fused_curve.json). A GPU pack is bounded by memory alone.
CPU_PACK_IMAGES = 16

#: Where packs run: here one after another, as Slurm array tasks, or as submitit's local emulation of them.
BACKENDS = ("local", "slurm", "submitit_local")


def pack_key(cfg: Mapping[str, Any]) -> str:
    """What jobs must share to share a forward pass: the network (the ``model`` group), ``perf`` and ``device``.

    Everything else may differ inside a pack. ``model.redirected_relu`` is part of the model
    group, and since it changes the network's backward for a number of steps, jobs using it
    only pack with jobs of the same setting.
    """
    return json.dumps({"model": cfg.get("model"), "perf": cfg.get("perf"), "device": cfg.get("device", "auto")}, sort_keys=True, default=str)


def images_per_step(cfg: Mapping[str, Any]) -> int:
    """Rows a job puts through the network each step: its batch times its views per image."""
    crops = int((cfg.get("transforms") or {}).get("crops") or 0)
    return int(cfg.get("batch", 1)) * max(1, crops)


#: Swept keys that replicate a measurement (the seed, the unit or class): the *blocks* of a balanced plan.
#: The report pairs arms over the same keys (:data:`featviz.app.report.effects.REPLICATE_KEYS`).
BLOCK_KEYS = ("seed", "objective.unit")


def _swept(specs: Sequence[JobSpec]) -> list[str]:
    """The override keys whose value differs between ``specs``, in override order."""
    settings = [parse_overrides(s.overrides) for s in specs]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    return [k for k in keys if len({s.get(k) for s in settings}) > 1]


def balanced(specs: Sequence[JobSpec], cap: int, block_keys: Sequence[str] = BLOCK_KEYS) -> list[list[int]]:
    """Indices of ``specs`` (jobs of one network) cut into as few packs of at most ``cap`` images per step
    as fit, laid out so that no swept setting is confounded with a pack.

    A *block* is the jobs that share their replicate values (:data:`BLOCK_KEYS`: one seed's arms);
    an *arm* is a combination of the other swept values. When every block fits a pack, whole
    blocks are dealt to the packs in order, evenly (pack ``b * P // B``), so every pack holds
    every arm and a seed's arms, the pairs the report compares, share one pack and one clock. A
    block larger than a pack is split: the jobs, block by block and arm by arm, are dealt
    round-robin, so each pack holds as even a mix of arms as the sizes allow. Packs are numbered
    in order of their first job; jobs keep sweep order inside a pack.
    """
    images = [images_per_step(s.config) for s in specs]
    alone = [[i] for i in range(len(specs)) if images[i] > cap]  # a job above the cap: a pack of its own
    rest = [i for i in range(len(specs)) if images[i] <= cap]
    if sum(images[i] for i in rest) <= cap:
        return sorted(alone + ([rest] if rest else []))
    swept = _swept([specs[i] for i in rest])
    settings = {i: parse_overrides(specs[i].overrides) for i in rest}
    block_of = {i: tuple(settings[i].get(k) for k in swept if k in block_keys) for i in rest}
    arm_of = {i: tuple(settings[i].get(k) for k in swept if k not in block_keys) for i in rest}
    blocks = list(dict.fromkeys(block_of[i] for i in rest))
    members = [[i for i in rest if block_of[i] == b] for b in blocks]
    if all(sum(images[i] for i in m) <= cap for m in members):
        units, deal = members, lambda u, p: u * p // len(members)
    else:  # a block is larger than a pack: deal single jobs, block by block, arm by arm
        arms = list(dict.fromkeys(arm_of[i] for i in rest))
        order = sorted(rest, key=lambda i: (blocks.index(block_of[i]), arms.index(arm_of[i])))
        units, deal = [[i] for i in order], lambda u, p: u % p
    packs: list[list[int]] = [[i] for unit in units for i in unit]
    for count in range(-(-sum(images[i] for i in rest) // cap), len(units) + 1):
        trial: list[list[int]] = [[] for _ in range(count)]
        for u, unit in enumerate(units):
            trial[deal(u, count)] += unit
        if all(sum(images[i] for i in p) <= cap for p in trial):
            packs = trial
            break
    return sorted(alone + [sorted(p) for p in packs if p])


def blocking(packs: Sequence[Pack], block_keys: Sequence[str] = BLOCK_KEYS) -> None:
    """Record on each of ``packs`` (a sweep's plan) the pack as a blocking factor: its level and how many
    there are, the replicate keys the plan kept whole (a block's jobs share a pack), and how many of the
    sweep's arms (combinations of the other swept values) it holds: ``arms_in_pack == arms`` in every
    pack is a balanced design, where no swept value is confounded with a pack."""
    specs = [s for p in packs for s in p.specs]
    swept = _swept(specs)

    def arm(spec: JobSpec) -> tuple[str | None, ...]:
        return tuple(parse_overrides(spec.overrides).get(k) for k in swept if k not in block_keys)

    arms = len({arm(s) for s in specs})
    for pack in packs:
        pack.blocking = {"factor": "pack", "level": pack.id, "levels": len(packs), "replicates": [k for k in swept if k in block_keys],
                         "arms": arms, "arms_in_pack": len({arm(s) for s in pack.specs})}


def plan_packs(specs: Sequence[JobSpec], nums: Sequence[int], limit: Callable[[JobSpec], int]) -> list[Pack]:
    """Group jobs by :func:`pack_key` (networks in sweep order), each group cut into packs of at most
    ``limit(first job)`` images per step by :func:`balanced` (every setting spread over the packs).

    A job that alone needs more than the limit gets a pack of its own.
    """
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(pack_key(spec.config), []).append(i)
    packs: list[Pack] = []
    for members in groups.values():
        group = [specs[i] for i in members]
        for cut in balanced(group, limit(group[0])):
            pack = Pack(len(packs))
            for j in cut:
                pack.specs.append(group[j])
                pack.nums.append(nums[members[j]])
                pack.images += images_per_step(group[j].config)
            packs.append(pack)
    blocking(packs)
    return packs


def memory_limit(max_images: int | None) -> Callable[[JobSpec], int]:
    """``limit(spec)`` for :func:`plan_packs`: ``max_images`` when set, else what half the free
    memory holds for that job's network (:mod:`featviz.models.footprint`), measured once per network."""
    if max_images is not None:
        if int(max_images) < 1:
            raise ConfigError(f"hydra.launcher.max_images={max_images} must be >= 1 (null sizes packs from the free memory)")
        return lambda spec: int(max_images)
    cache: dict[str, int] = {}

    def limit(spec: JobSpec) -> int:
        key = pack_key(spec.config)
        if key not in cache:
            from featviz.app.build import model_from_config
            from featviz.models.footprint import free_bytes, image_bytes, max_images as fit
            from featviz.models.feature_model import LOGITS
            from featviz.render import resolve_device

            try:
                model = model_from_config(spec.config["model"], "cpu")
                device = resolve_device(spec.config.get("device", "auto"))
                cache[key] = fit(image_bytes(model, [LOGITS]), free_bytes(device))
                if device.type == "cpu":
                    cache[key] = min(cache[key], CPU_PACK_IMAGES)
            except FeatvizError as exc:  # the jobs report it themselves; they get packs of one
                log.debug("no pack size for %s: %s", key, exc)
                cache[key] = 1
            log.info("fused: packs of up to %d images per step for model %s", cache[key], spec.config["model"].get("name"))
        return cache[key]

    return limit


def _collect(cfg: DictConfig) -> JobSpec:
    """The task Hydra's ``run_job`` runs for each job: the checks a render makes before building
    anything (:func:`featviz.app.main.preflight`), then its resolved config, folder and overrides."""
    from featviz.app.main import preflight

    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    preflight(cfg, out_dir)
    return JobSpec(to_plain(cfg), out_dir, list(hydra_cfg.overrides.task))


def launch(
    config: DictConfig,
    hydra_context: HydraContext,
    task_function: TaskFunction,
    params: Mapping[str, Any],
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> list[JobReturn]:
    """Compose every job, plan the packs, render them; one ``JobReturn`` per job, in order."""
    backend = str(params.get("backend", "local"))
    if backend not in BACKENDS:
        raise ConfigError(f"hydra.launcher.backend={backend!r} is not a fused-sweep backend; use one of {list(BACKENDS)}")
    limit = memory_limit(params.get("max_images"))
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    render_task = getattr(task_function, "__module__", "") == "featviz.app.main"
    returns: list[JobReturn] = []
    specs: list[JobSpec] = []
    nums: list[int] = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        job_cfg = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(job_cfg):
            job_cfg.hydra.job.id = idx
            job_cfg.hydra.job.num = idx
        # Not a render (units, microscope): those jobs run one after another, as the basic launcher runs them.
        ret = run_job(
            hydra_context=hydra_context,
            task_function=_collect if render_task else task_function,
            config=job_cfg,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(config.hydra.hydra_logging, config.hydra.verbose)
        returns.append(ret)
        if render_task and ret.status == JobStatus.COMPLETED:
            specs.append(ret.return_value)
            nums.append(len(returns) - 1)
        elif render_task:
            print(f"featviz: error: job {idx}: {ret._return_value}; the sweep goes on", file=sys.stderr)
            ret.status, ret.return_value = JobStatus.COMPLETED, None
    if not specs:
        return returns
    packs = plan_packs(specs, nums, limit)
    log.info("fused: %d job(s) in %d pack(s) (%s)", len(specs), len(packs), ", ".join(str(len(p.specs)) for p in packs))
    try:
        if backend != "local":
            from featviz.app.fused_slurm import run_on_slurm

            outcomes = run_on_slurm(packs, params, sweep_dir)
        else:
            outcomes = [_run_local(pack) for pack in packs]
    except Preempted as exc:
        hint = "" if exc.handed_over else f"; run the same command with hydra.sweep.dir={sweep_dir} to resume"
        print(f"featviz: {'interrupted' if exc.signal_name == 'SIGINT' else 'preempted'}: {exc}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    for pack, results in zip(packs, outcomes):
        for num, result in zip(pack.nums, results):
            ret = returns[num]
            if isinstance(result, dict):
                ret.return_value = result
            else:
                print(f"featviz: error: job {ret.hydra_cfg.hydra.job.num}: {result}; the sweep goes on", file=sys.stderr)
                ret.return_value = None
    return returns


def _run_local(pack: Pack) -> list[dict[str, Any] | str]:
    """One pack on this machine: in a child of the fork server unless ``isolate=false``."""
    first = pack.specs[0].config
    if first.get("isolate") is False:
        return run_pack_lines(pack.specs, pack.info)
    from featviz.app.isolation import JobCrashed, run_isolated
    from featviz.app.shared_model import server_env

    record = {"overrides": pack.specs[0].overrides, "config": first, **pack_record(pack.info)}
    try:
        return run_isolated(run_pack_lines, (pack.specs, pack.info), pack.specs[0].out_dir, record, server_env(first))
    except JobCrashed as exc:
        return crashed(pack, str(exc))

