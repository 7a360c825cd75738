"""A search for the best setting (``+experiment=search``): Hydra's Optuna sweeper proposes, featviz scores.

Each trial is one config. Its score must hold beyond one class or unit, so a trial renders
every entry of ``search.units`` (ImageNet classes, or a layer's units) as one pack
(:func:`featviz.app.pack.run_pack`: one batched optimization), each into its own folder
under the trial's, and returns the mean of ``search.metric`` over them to the sweeper.
Constraints (``search.at_most`` / ``search.at_least``: ``{metric: bound}``, on the means)
subtract ``search.penalty`` x their relative violation from the score, so an infeasible
trial ranks below every feasible one near it. The trial's ``result.json`` records the
score, each mean and whether it was feasible. At the end, :class:`WritePreset` turns the
best trial's parameters into ``conf/preset/<search.preset>.yaml``, which ``preset=NAME`` loads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from featviz.app.config import CONF_DIR, to_plain
from featviz.errors import ConfigError
from featviz.images import atomic_write_bytes, save_json
from featviz.rundir import RESULT_NAME

log = logging.getLogger("featviz")

RESULTS_NAME = "optimization_results.yaml"  # what Hydra's Optuna sweeper writes into the sweep folder


def score(means: Mapping[str, float], search: Mapping[str, Any]) -> tuple[float, bool]:
    """The trial's number for the sweeper and whether it met every constraint."""
    metric, direction = str(search["metric"]), str(search.get("direction", "maximize"))
    value = means.get(metric, math.nan)
    violation = 0.0
    for bounds, worse in ((search.get("at_most") or {}, 1.0), (search.get("at_least") or {}, -1.0)):
        for key, bound in bounds.items():
            if not math.isfinite(means.get(key, math.nan)):
                raise ConfigError(f"search constraint on {key!r}: no run of the trial recorded that metric; check metrics.* and the metric's name")
            violation += max(0.0, worse * (means[key] - float(bound))) / max(abs(float(bound)), 1e-9)
    penalty = float(search.get("penalty", 1.0)) * violation
    return (value - penalty if direction == "maximize" else value + penalty), violation == 0.0


def run_trial(cfg: DictConfig, out_dir: Path) -> float:
    """Render the trial's units as one pack under ``out_dir``; its score (nan when every unit failed)."""
    from featviz.app.pack import JobSpec, run_pack

    container = to_plain(cfg)
    search = container["search"]
    units = list(search.get("units") or [])
    if not units or "metric" not in search:
        raise ConfigError("search needs search.metric (e.g. transfer/prob) and search.units (the classes or units each trial renders, e.g. [281,947])")
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    specs = []
    for unit in units:
        job = {**container, "objective": {**container["objective"], "unit": unit}}
        specs.append(JobSpec(job, out_dir / f"unit_{unit}", [*overrides, f"objective.unit={unit}"]))
    outcomes = run_pack(specs, {"id": 0, "size": len(specs)})
    finals = [o for o in outcomes if isinstance(o, dict)]
    means = {k: sum(f[k] for f in finals) / len(finals) for k in finals[0] if all(isinstance(f.get(k), (int, float)) for f in finals)} if finals else {}
    value, feasible = score(means, search) if finals else (math.nan, False)
    status = "completed" if finals else "failed"
    save_json({"status": status, "overrides": overrides, "config": container, "steps_done": int(container["steps"]),
               "final": {"search/score": value, "search/feasible": float(feasible), "search/units_done": len(finals), **means}}, out_dir / RESULT_NAME)
    log.info("trial score %.4g (%s = %.4g, feasible: %s) over %d unit(s)", value, search["metric"], means.get(search["metric"], math.nan), feasible, len(finals))
    return value


def preset_yaml(params: Mapping[str, Any], note: str) -> str:
    """A preset file setting ``params`` (a group choice such as ``param: maco`` becomes a defaults override)."""
    groups = {k: v for k, v in params.items() if "." not in k and (CONF_DIR / k).is_dir()}
    values = OmegaConf.to_yaml(OmegaConf.from_dotlist([f"{k}={v}" for k, v in params.items() if k not in groups]))
    lines = ["# @package _global_", *(f"# {line}" for line in note.splitlines())]
    if groups:
        lines += ["defaults:", *(f"  - override /{k}: {v}" for k, v in groups.items())]
    return "\n".join(lines) + "\n" + (values if params.keys() - groups.keys() else "")


#: The groups a pipeline is made of: the best trial's choice of each goes into the preset even
#: when the search fixed it (``+experiment=search`` uses NAdam), so the preset is the whole pipeline.
PIPELINE_GROUPS = ("param", "transforms", "optimizer")


def best_trial(sweep_dir: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """The best trial's group choices and ``steps``, found by its overrides (empty if not found)."""
    wanted = {f"{k}={v}" for k, v in params.items()}
    for hydra_yaml in sweep_dir.glob("*/.hydra/hydra.yaml"):
        hydra_cfg = OmegaConf.load(hydra_yaml).hydra
        if wanted <= {str(o) for o in hydra_cfg.overrides.task}:
            config = OmegaConf.load(hydra_yaml.parent / "config.yaml")
            return {**{g: hydra_cfg.runtime.choices[g] for g in PIPELINE_GROUPS if g in hydra_cfg.runtime.choices}, "steps": config.steps}
    return {}


class WritePreset(Callback):
    """Hydra callback: after an Optuna search, the best trial's pipeline as a preset file."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        name = OmegaConf.select(config, "search.preset")
        path = sweep_dir / RESULTS_NAME
        if not name or not path.is_file():
            return
        results = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        if "best_params" not in results:  # a multi-objective search has a Pareto front, not one best
            log.warning("search: %s holds no single best trial; no preset written", path)
            return
        params = {**best_trial(sweep_dir, results["best_params"]), **results["best_params"]}
        note = (f"Found by +experiment=search in {sweep_dir.name}: {OmegaConf.select(config, 'search.metric')} "
                f"score {results['best_value']:.4g} over units {list(OmegaConf.select(config, 'search.units'))} (docs/ablations.md)")
        text = preset_yaml(params, note)
        # conf/preset of the working folder: featviz's own conf/ in its checkout, the lab's conf/ in a lab's
        # project (docs/your_project.md); never the installed package's folder.
        folder = Path(str(OmegaConf.select(config, "search.preset_dir") or "conf/preset")).absolute()
        for target in (folder / f"{name}.yaml", sweep_dir / f"preset_{name}.yaml"):
            atomic_write_bytes(target, lambda f: f.write(text.encode()))
        found = folder.parent.resolve() == CONF_DIR.resolve()
        hint = "" if found else f" with hydra.searchpath=[file://{folder.parent}]"
        print(f"featviz: the best trial is preset={name}{hint} ({folder / f'{name}.yaml'}; a copy in {sweep_dir})")
