"""How featviz's throughput scales, and how much a step costs beyond the network itself.

Not a test: a measurement, to run by hand (see benchmarks/README.md)::

    .venv/bin/python benchmarks/scaling.py --threads 1 --out benchmarks/results/scaling.json

Four sweeps on the embedded EfficientNet-Lite0 with the default perf options (BatchNorm
folding, channels-last, one fused resample), the standard transformation stack and Adam:

* ``batch``: images x steps / s against the batch size (128 px FFT, resized to 224);
* ``size``: images x steps / s against the image side, rendered at that size (no resize);
* ``units``: units x steps / s for rendering every channel of one layer, ``units.batch``
  at a time, setup of each render included (what ``python -m featviz units`` does);
* ``overhead``: the time of a full optimization step (parameterization, transforms,
  network, objective, backward, Adam) over the time of the bare forward+backward of the
  truncated, optimized network on a fixed 224 px input of the same batch size.

Every figure is a median over repetitions that alternate between the settings compared;
both the wall clock and this process's CPU time are recorded (on a shared machine the
CPU time is the steadier of the two).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from featviz.app.build import RunParts
from featviz.tools.contact_sheet import render_units
from featviz.models import FeatureModel, build_model  # noqa: E402
from featviz.objectives.units import Channel, ClassLogit
from featviz.objectives.base import Objective
from featviz.params.fourier import FFTImage
from featviz.transforms import Compose, build_transforms  # noqa: E402

LAYERS = {"early": "blocks.2", "middle": "blocks.8", "late": "blocks.14", "logit": "logits"}


def standard(resize: int | None) -> Compose:
    return build_transforms(pad=12, pad_mode="constant", jitter=8, scale=(0.9, 1.1), rotate=10, jitter_after=4, resize=resize, fuse_geometry=True)


def objective_for(layer: str, batch: int) -> Objective:
    """Unit ``i % channels`` on image ``i``, so a batch renders distinct units like a contact sheet does."""
    from featviz.tools.contact_sheet import UnitsObjective

    if layer == "logits":
        return ClassLogit(281)
    return UnitsObjective(layer, [i % 16 for i in range(batch)]) if batch > 1 else Channel(layer, 3)


class Stepper:
    """One optimization step of a render, exactly as :func:`featviz.render.render` runs it."""

    def __init__(self, model: FeatureModel, layer: str, batch: int, size: int, resize: int | None) -> None:
        self.model, self.generator = model, torch.Generator().manual_seed(0)
        self.param = FFTImage(size, batch=batch, generator=self.generator)
        self.transforms = standard(resize)
        self.objective = objective_for(layer, batch)
        self.optimizer = torch.optim.Adam(self.param.parameters(), lr=0.05)

    def __call__(self) -> None:
        images = self.param()
        acts = self.model(self.transforms(images, self.generator), self.objective.layers)
        loss = -self.objective(acts).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class Bare:
    """Forward+backward of the truncated network alone, on a fixed input of the same shape."""

    def __init__(self, model: FeatureModel, layer: str, batch: int, side: int) -> None:
        self.model, self.objective = model, objective_for(layer, batch)
        self.x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0)).requires_grad_(True)

    def __call__(self) -> None:
        self.x.grad = None
        (-self.objective(self.model(self.x, self.objective.layers)).mean()).backward()


def timed(fn: Callable[[], None], calls: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call, after one untimed warm-up call."""
    fn()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - w0) / calls, (time.process_time() - c0) / calls


def alternate(cases: dict[str, Callable[[], None]], calls: Callable[[str], int], reps: int) -> dict[str, dict[str, float]]:
    """Median (wall, CPU) seconds per call of each case, cases run in turn, order reversed every rep."""
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for rep in range(reps):
        for key in list(cases) if rep % 2 == 0 else list(cases)[::-1]:
            samples[key].append(timed(cases[key], calls(key)))
    return {k: {"wall_s": statistics.median(s[0] for s in v), "cpu_s": statistics.median(s[1] for s in v)} for k, v in samples.items()}


def batch_sweep(model: FeatureModel, layer: str, batches: list[int], reps: int) -> list[dict[str, Any]]:
    steppers = {str(b): Stepper(model, layer, b, 128, 224) for b in batches}
    res = alternate(steppers, lambda k: max(1, 8 // int(k)), reps)
    return [{"batch": int(k), **v, "images_steps_per_s": int(k) / v["wall_s"], "images_steps_per_cpu_s": int(k) / v["cpu_s"]} for k, v in res.items()]


def size_sweep(model: FeatureModel, layer: str, sizes: list[int], reps: int) -> list[dict[str, Any]]:
    steppers = {str(s): Stepper(model, layer, 1, s, None) for s in sizes}
    res = alternate(steppers, lambda k: max(1, (256 // int(k)) ** 2), reps)
    return [{"size": int(k), **v, "images_steps_per_s": 1 / v["wall_s"], "images_steps_per_cpu_s": 1 / v["cpu_s"]} for k, v in res.items()]


def units_sweep(model: FeatureModel, layer: str, unit_batches: list[int], steps: int) -> list[dict[str, Any]]:
    units = list(range(model.layer_shapes(224, [layer])[layer][0]))
    transforms = standard(224)

    def make_parts(k: int, chunk: list[int]) -> RunParts:
        g = torch.Generator().manual_seed(k)
        return RunParts(model, Channel(layer, chunk[0]), FFTImage(128, batch=len(chunk), generator=g), transforms, [],
                        lambda p: torch.optim.Adam(p, lr=0.05), g, torch.device("cpu"))

    out = []
    for b in unit_batches:
        c0 = time.process_time()
        result = render_units(model, layer, units, make_parts, batch=b, steps=steps)
        cpu = time.process_time() - c0
        out.append({"units": len(units), "batch": b, "wall_s": result.wall_time, "cpu_s": cpu,
                    "units_steps_per_s": result.unit_steps_per_s, "units_steps_per_cpu_s": len(units) * steps / cpu})
        print(f"  units {layer} batch {b:3d}: {out[-1]['units_steps_per_s']:.2f} units x steps / s, "
              f"{out[-1]['units_steps_per_cpu_s']:.2f} per CPU-second", flush=True)
    return out


def overhead(model: FeatureModel, reps: int, batch: int) -> list[dict[str, Any]]:
    out = []
    for label, layer in LAYERS.items():
        res = alternate({"step": Stepper(model, layer, batch, 128, 224), "bare": Bare(model, layer, batch, 224)}, lambda _k: 3, reps)
        out.append({"target": label, "layer": layer, "batch": batch, "step": res["step"], "bare": res["bare"],
                    "overhead_wall": res["step"]["wall_s"] / res["bare"]["wall_s"], "overhead_cpu": res["step"]["cpu_s"] / res["bare"]["cpu_s"]})
        print(f"  overhead {label:6s} ({layer}) batch {batch}: step {1e3 * res['step']['cpu_s']:.1f} ms CPU / bare "
              f"{1e3 * res['bare']['cpu_s']:.1f} ms = {out[-1]['overhead_cpu']:.2f} (wall {out[-1]['overhead_wall']:.2f})", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--layer", default="blocks.8", help="layer of the batch and size sweeps")
    parser.add_argument("--batches", default="1,2,4,8,16,32,64")
    parser.add_argument("--sizes", default="64,128,256,384,512")
    parser.add_argument("--units-layer", default="blocks.2")
    parser.add_argument("--unit-batches", default="1,4,8,24")
    parser.add_argument("--unit-steps", type=int, default=8)
    parser.add_argument("--sweeps", default="overhead,batch,size,units")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = build_model("efficientnet_lite0").optimize()
    report: dict[str, Any] = {"load_average_before": os.getloadavg(), "threads": args.threads, "torch": torch.__version__,
                              "cores": os.cpu_count(), "cpu": _cpu_name()}
    sweeps = args.sweeps.split(",")
    if "overhead" in sweeps:
        report["overhead"] = overhead(model, args.reps, 1)
    if "batch" in sweeps:
        report["batch"] = batch_sweep(model, args.layer, [int(b) for b in args.batches.split(",")], args.reps)
        for row in report["batch"]:
            print(f"  batch {row['batch']:3d}: {row['images_steps_per_s']:.2f} images x steps / s, {row['images_steps_per_cpu_s']:.2f} per CPU-second", flush=True)
    if "size" in sweeps:
        report["size"] = size_sweep(model, args.layer, [int(s) for s in args.sizes.split(",")], args.reps)
        for row in report["size"]:
            print(f"  size {row['size']:4d}: {row['images_steps_per_s']:.2f} images x steps / s, {row['images_steps_per_cpu_s']:.2f} per CPU-second", flush=True)
    if "units" in sweeps:
        report["units"] = units_sweep(model, args.units_layer, [int(b) for b in args.unit_batches.split(",")], args.unit_steps)
    report["load_average_after"] = os.getloadavg()
    print(f"load average {report['load_average_before'][0]:.1f} before, {report['load_average_after'][0]:.1f} after; "
          f"{report['cpu']}, {report['cores']} cores, {args.threads} torch thread(s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
