"""One microscope shard: render its batches, score each unit, save it, skip what is done.

Each batch is one optimization (:func:`featviz.tools.contact_sheet.render_units`: unit ``i``
of the batch is batch element ``i``), built by :func:`featviz.app.build.build_run` like a
render, with ``seed + batch index`` as its seed. Its units' files
(:class:`featviz.tools.microscope_files.UnitFiles`) are written as soon as the batch ends,
the records last: a shard killed or preempted mid-way loses at most the batch it was on, and
its rerun (the same command, the same ``hydra.sweep.dir``) skips every batch whose records
are on disk and renders the rest to the same bytes. A finished shard's ``result.json`` makes
a rerun skip it whole; a folder holding another config's shard is refused.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from featviz.app.build import build_run, model_from_config
from featviz.app.microscope.exemplars import Exemplars
from featviz.app.microscope.plan import Batch, check_settings, layer_units, plan_batches, shard_batches
from featviz.app.microscope.signals import StopSignals
from featviz.app.microscope.tracking import log_shard
from featviz.callbacks import Callback
from featviz.checkpoint import WATCH_KEYS, config_differences, find_resume_point
from featviz.errors import CheckpointError, ConfigError, Preempted
from featviz.images import grid, save_json, save_png
from featviz.metrics.per_unit import exemplar_ratio, image_metrics_each, robust_each
from featviz.metrics.views import UnseenViews
from featviz.models.feature_model import FeatureModel
from featviz.progress import ProgressBar
from featviz.render import render, resolve_device
from featviz.rundir import RESULT_NAME, read_json
from featviz.tools.contact_sheet import UnitsObjective, render_units
from featviz.tools.dataset_examples import top_bottom
from featviz.tools.microscope_files import SHARD_NAME, UNITS_DIR, UnitFiles

log = logging.getLogger("featviz")


def _computed(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` without the keys that change how a shard is watched or merged, not what it renders."""
    return {**{k: v for k, v in cfg.items() if k != "isolate"}, "microscope": {k: v for k, v in cfg["microscope"].items() if k != "site"}}


def _settings(cfg: Mapping[str, Any]) -> str:
    """One line saying how every unit was rendered, for the site's index page."""
    param, m = cfg["param"], cfg["microscope"]
    return (
        f"{cfg['steps']} steps, param={param['kind']} {param['size']} px, {str(cfg['optimizer'].get('_target_', '')).rsplit('.', 1)[-1]} lr {cfg['optimizer'].get('lr')}, "
        f"batch {m['batch']}, {m['kind']} units, seed {cfg['seed']}"
        + (f", {m['facets']} facets" if m["facets"] else "")
        + (f", dataset examples from {m['reference']}" if m["reference"] else "")
    )


def _claim(out_dir: Path, cfg: Mapping[str, Any], planned: Mapping[str, list[int]]) -> None:
    """Write ``shard.json`` (the config, the plan) or, on a rerun, check it is this config's."""
    path = out_dir / UNITS_DIR / SHARD_NAME
    old = read_json(path)
    if old is not None:
        diff = config_differences(_computed(old.get("config") or {"microscope": {}}), _computed(cfg), ignore=WATCH_KEYS)
        if diff:
            raise CheckpointError(f"{out_dir} holds a microscope shard of another config ({'; '.join(diff[:5])}); rerun with that config to resume, or choose a new hydra.sweep.dir")
        return
    m = cfg["microscope"]
    save_json(
        {"config": dict(cfg), "layers": list(planned), "planned": {k: len(v) for k, v in planned.items()}, "model": cfg["model"]["name"],
         "shard": m["shard"], "shards": m["shards"], "settings": _settings(cfg)},
        path,
    )


class Shard:
    """Renders one shard's batches with one loaded model; see the module docstring."""

    def __init__(self, cfg: Mapping[str, Any], out_dir: Path, model: FeatureModel | None = None) -> None:
        self.cfg, self.out_dir = dict(cfg), Path(out_dir)
        self.m = dict(cfg["microscope"])
        check_settings(self.m)
        if int(self.m["facets"]) == 1:
            raise ConfigError("microscope.facets=1 has no diversity to optimize; use 0 (none) or >= 2 images per unit")
        self.render_cfg = {k: v for k, v in self.cfg.items() if k != "microscope"}
        self.model = model if model is not None else model_from_config(cfg["model"], resolve_device(cfg.get("device", "auto")))
        resize = bool((cfg.get("transforms") or {}).get("resize", True))
        size = self.model.input_size if resize else int(cfg["param"].get("size", 128))
        self.planned = layer_units(self.model, [str(layer) for layer in self.m["layers"]], self.m["units"], size)
        self.batches = shard_batches(plan_batches(self.planned, int(self.m["batch"])), int(self.m["shard"]), int(self.m["shards"]))
        self.exemplars = Exemplars(self.m["reference"], self.model, str(self.m["kind"])) if self.m["reference"] else None
        metrics = cfg.get("metrics") or {}
        self.views = UnseenViews(tuple(metrics.get("view_crop", (0.7, 0.9))), bool(metrics.get("view_flip", True)),
                                 tuple(metrics.get("view_downscale", (0.5, 0.8))), tuple(metrics.get("view_blur", (0.5, 1.0))))
        self.n_views, self.view_seed = int(metrics.get("views", 16)), int(metrics.get("view_seed", 0))
        self.hf_cutoff, self.quantile = float(metrics.get("hf_cutoff", 0.25)), float(metrics.get("exemplar_quantile", 0.2))
        self.stop = StopSignals(self.out_dir / UNITS_DIR)

    def files(self, batch: Batch) -> list[UnitFiles]:
        return [UnitFiles(self.out_dir, batch.layer, u) for u in batch.units]

    def run(self) -> dict[str, Any]:
        """Render every batch not yet on disk; the shard's summary (units rendered now, skipped, timings)."""
        _claim(self.out_dir, self.cfg, self.planned)
        rendered = skipped = 0
        seconds = 0.0
        with self.stop:
            for batch in self.batches:
                self.stop.check()
                if all(f.done for f in self.files(batch)):
                    skipped += len(batch.units)
                    continue
                seconds += self.render_batch(batch)
                rendered += len(batch.units)
        total = sum(len(b.units) for b in self.batches)
        spent = sum(float((f.read_record() or {}).get("seconds") or 0.0) for b in self.batches for f in self.files(b))
        return {"units": total, "rendered_now": rendered, "skipped": skipped, "seconds_now": seconds, "seconds": spent,
                "units_per_hour": total / spent * 3600 if spent > 0 else float("nan")}

    def render_batch(self, batch: Batch) -> float:
        """Render, score and save one batch; the seconds it took."""
        seed = int(self.cfg.get("seed", 0)) + batch.index
        t0 = time.perf_counter()

        def make_parts(_k: int, chunk: list[int]) -> Any:
            # The objective only tells build_run which layer to keep exact; render_units uses UnitsObjective.
            return build_run({**self.render_cfg, "batch": len(chunk), "seed": seed, "objective": {"kind": "channel", "layer": batch.layer, "unit": chunk[0]}}, model=self.model)

        def callbacks(_k: int, _chunk: list[int]) -> list[Callback]:
            return [ProgressBar(), self.stop] if self.cfg.get("progress", True) else [self.stop]

        result = render_units(self.model, batch.layer, list(batch.units), make_parts, batch=len(batch.units), steps=int(self.cfg["steps"]), kind=str(self.m["kind"]), callbacks=callbacks)
        records = [{"activation": s} for s in result.scores]
        if self.m["scorecard"]:
            objective = UnitsObjective(batch.layer, list(batch.units), str(self.m["kind"]))
            device = self.model.mean.device
            robust = robust_each(self.model, objective, result.images.to(device), self.views, self.n_views, torch.Generator().manual_seed(self.view_seed)) if self.n_views else None
            for i, image_metrics in enumerate(image_metrics_each(result.images, self.hf_cutoff)):
                records[i].update(image_metrics, **({"robust": robust[i]} if robust is not None else {}))
        files = self.files(batch)
        examples: list[dict[str, Any]] = [{} for _ in files]
        for i, f in enumerate(files):
            save_png(result.images[i], f.path("png"))
            if int(self.m["facets"]) >= 2:
                save_png(self.facets(batch, f.unit, seed), f.path("facets.png"))
            if self.exemplars is not None:
                examples[i] = self.examples(f, records[i])
        per_unit = (time.perf_counter() - t0) / len(files)
        for i, f in enumerate(files):
            f.write_record({"kind": str(self.m["kind"]), "seed": seed, "steps": int(self.cfg["steps"]), "batch_index": batch.index,
                            "seconds": per_unit, "metrics": records[i], "examples": examples[i]})
        log.info("microscope: %s units %s in %.1f s", batch.layer, list(batch.units), per_unit * len(files))
        return per_unit * len(files)

    def facets(self, batch: Batch, unit: int, seed: int) -> torch.Tensor:
        """``microscope.facets`` images of one unit, optimized together with the diversity term, tiled."""
        kind = "neuron" if str(self.m["kind"]) == "neuron" else "channel"
        regularizer = {**(self.render_cfg.get("regularizer") or {}), "diversity": float(self.m["facet_diversity"])}
        cfg = {**self.render_cfg, "batch": int(self.m["facets"]), "seed": seed, "objective": {"kind": kind, "layer": batch.layer, "unit": unit}, "regularizer": regularizer}
        parts = build_run(cfg, model=self.model)
        result = render(parts.model, parts.objective, param=parts.param, transforms=parts.transforms, regularizers=parts.regularizers, optimizer=parts.optimizer,
                        steps=int(self.cfg["steps"]), log_every=int(self.cfg["steps"]), callbacks=parts.callbacks, device=parts.device, generator=parts.generator)
        return grid(result.images, nrow=len(result.images))

    def examples(self, f: UnitFiles, record: dict[str, Any]) -> dict[str, Any]:
        """Save the unit's most and least activating photos; their paths and scores (and exemplar_ratio into ``record``)."""
        assert self.exemplars is not None
        scores = self.exemplars.scores(f.layer)[:, f.unit]
        top, bottom = top_bottom(scores, int(self.m["examples"]))
        record["exemplar_ratio"] = exemplar_ratio(float(record["activation"]), scores, self.quantile)
        found = {}
        for side, indices in (("top", top), ("bottom", bottom)):
            save_png(self.exemplars.strip(indices), f.path(f"{side}.png"))
            found[side] = [{"path": str(self.exemplars.reference.paths[i]), "score": float(scores[i])} for i in indices]
        return found


def run_shard(cfg: Mapping[str, Any], out_dir: Path, overrides: Sequence[str] = (), model: FeatureModel | None = None) -> dict[str, Any]:
    """Run one shard of ``cfg`` (``conf/microscope.yaml``) into ``out_dir``; its ``result.json`` final block.

    ``overrides`` (the job's, from Hydra) go into ``result.json`` as a render job's do. A completed shard of the same config is skipped (its summary returned); whatever fails,
    ``result.json`` says so, as for a render job, so the sweep summary lists it.
    """
    from featviz.app.threads import set_threads

    cfg = dict(cfg)
    resume = find_resume_point(out_dir, cfg)
    if resume.completed is not None:
        print(f"featviz: {out_dir} holds this shard, completed; nothing to redo")
        return dict(resume.completed.get("final") or {})
    result: dict[str, Any] = {"overrides": list(overrides), "config": cfg, "steps_done": 0}
    try:
        set_threads(cfg.get("threads"))
        shard = Shard(cfg, out_dir, model)
        final = shard.run()
        log_shard(cfg, out_dir, [f for b in shard.batches for f in shard.files(b)], final, list(overrides))
    except BaseException as exc:
        stopped = isinstance(exc, (KeyboardInterrupt, Preempted))
        status = "preempted" if isinstance(exc, Preempted) and exc.signal_name != "SIGINT" else "interrupted" if stopped else "failed"
        save_json({**result, "status": status, "final": {}, "error": {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(limit=8)}}, out_dir / RESULT_NAME)
        raise
    save_json({**result, "status": "completed", "steps_done": int(cfg["steps"]), "final": final}, out_dir / RESULT_NAME)
    return final
