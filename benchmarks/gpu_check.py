"""The prepared GPU check: everything featviz claims for CUDA, measured in one go, into one JSON.

Not a test: run it on a CUDA machine (under 8 minutes on one GPU at the default sizes) and
commit the JSON it writes under benchmarks/results/::

    .venv/bin/python benchmarks/gpu_check.py                     # --device cuda, default sizes
    .venv/bin/python benchmarks/gpu_check.py --device cpu --tiny # what tests/test_gpu_check.py runs

Each part is recorded even when another fails (its error in place of its figures):

* ``suite``: the device-aware tests (those taking the ``device`` fixture: render, objectives,
  params, transforms, speed-ups) run with ``pytest --device``; passed / failed / skipped and
  the names of the failures.
* ``fork_server``: what the fork server of isolated sweep jobs loads before it forks
  (featviz.app.isolation.PRELOAD), imported in a fresh process: a CUDA context made there
  would break every child's CUDA, so torch must not have initialised CUDA, nor loaded libcuda.
* ``isolated_multirun``: a two-job sweep on the device, each job in a child of the fork
  server; it completes only if the server left CUDA alone.
* ``microscope``: a small layer's units as one shard; units per hour.
* ``lucent``: featviz's loop against torch-lucent's ``render_vis`` on the same work, when
  ``lucent`` imports in this interpreter (its own venv: benchmarks/README.md); a note otherwise.
* ``batch_curve``: seconds per step and images per second for 1 to 64 images per step.
* ``perf``: ``perf.amp`` none / bf16 and ``perf.compile`` off / on: seconds per step and the
  objective reached (bf16 changes results; compile must not).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from featviz.app.isolation import PRELOAD  # noqa: E402
from featviz.callbacks import Callback, RenderContext  # noqa: E402
from featviz.models import build_model  # noqa: E402
from featviz.models.speedups.options import PerfOptions  # noqa: E402
from featviz.objectives.units import Channel  # noqa: E402
from featviz.params.fourier import FFTImage  # noqa: E402
from featviz.render import render  # noqa: E402
from featviz.transforms import build_transforms  # noqa: E402

#: The test files whose device-aware tests the check runs (``-m device_aware``).
SUITE = ["tests/test_render.py", "tests/objectives/test_objectives.py", "tests/params/test_params.py",
         "tests/test_transforms.py", "tests/models/test_speedups.py"]
LAYER, UNIT = "blocks.8", 5  # the "middle" target of benchmarks/vs_lucent.py


def sizes(tiny: bool) -> dict[str, Any]:
    """The work of each part: the default on a GPU, ``--tiny`` so a CPU test runs it in a minute."""
    if tiny:
        return {"side": 32, "steps": 4, "batches": [1, 2], "perf_batch": 1, "sweep_steps": 3, "units": 2, "lucent_steps": 4}
    return {"side": 128, "steps": 32, "batches": [1, 2, 4, 8, 16, 32, 64], "perf_batch": 16, "sweep_steps": 64, "units": 16, "lucent_steps": 128}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class StepClock(Callback):
    """Seconds of each optimizer step (the device synchronised at each end, so the time is the GPU's)."""

    def __init__(self, device: str) -> None:
        self.device, self.marks = device, [time.perf_counter()]

    def on_after_update(self, ctx: RenderContext, step: int) -> None:
        sync(self.device)
        self.marks.append(time.perf_counter())

    def per_step(self, skip: int = 2) -> float:
        """Median step time, the first ``skip`` steps (allocation, autotuning, compilation) left out."""
        deltas = [b - a for a, b in zip(self.marks, self.marks[1:])]
        return statistics.median(deltas[skip:] or deltas)


def one_render(model: Any, device: str, side: int, batch: int, steps: int) -> dict[str, Any]:
    """The default pipeline's work (FFT image, standard transforms, resize to 224) timed per step."""
    clock = StepClock(device)
    generator = torch.Generator().manual_seed(0)
    tf = build_transforms(pad=12, jitter=8, scale=(0.9, 1.1), rotate=10, jitter_after=4, resize=224)
    sync(device)
    start = time.perf_counter()
    result = render(model, Channel(LAYER, UNIT), param=FFTImage(side, batch=batch, generator=generator), transforms=tf,
                    steps=steps, log_every=steps, device=device, generator=generator, callbacks=[clock])
    sec = clock.per_step()
    return {"batch": batch, "seconds_per_step": sec, "images_per_s": batch / sec, "first_step_s": clock.marks[1] - start,
            "objective": float(result.final["objective"])}


def part_suite(device: str, pytest_k: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "device_aware", f"--device={device}",
                f"--junitxml={xml}", *SUITE, *(["-k", pytest_k] if pytest_k else [])]
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
        cases = ET.parse(xml).getroot().iter("testcase") if xml.is_file() else iter(())
        outcome: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
        for case in cases:
            name = f"{case.get('classname')}::{case.get('name')}"
            kind = "failed" if case.find("failure") is not None or case.find("error") is not None else "skipped" if case.find("skipped") is not None else "passed"
            outcome[kind].append(name)
    return {"exit_code": proc.returncode, "wall_s": time.perf_counter() - start, "passed": len(outcome["passed"]),
            "failed": outcome["failed"], "skipped": len(outcome["skipped"]), "tail": proc.stdout[-1500:] if outcome["failed"] or proc.returncode else ""}


FORK_SERVER_PROBE = """
import importlib, json, sys, torch
for name in sys.argv[1:]:
    importlib.import_module(name)
maps = open("/proc/self/maps").read() if sys.platform.startswith("linux") else ""
from featviz.app import shared_model
print(json.dumps({"torch_cuda_initialized": torch.cuda.is_initialized(), "libcuda_loaded": "libcuda.so" in maps,
                  "built_shared_model": shared_model._SHARED is not None}))
"""


def part_fork_server(device: str) -> dict[str, Any]:
    """Import what the fork server imports, with the default model named for it as a CPU sweep names it."""
    from omegaconf import OmegaConf

    from featviz.app.shared_model import ENV, key

    model = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / "efficientnet_lite0.yaml"))
    perf = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "config.yaml").perf)
    proc = subprocess.run([sys.executable, "-c", FORK_SERVER_PROBE, *PRELOAD], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, ENV: key({"model": model, "perf": perf})})
    if proc.returncode:
        raise RuntimeError(proc.stderr[-1500:])
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**found, "cuda_safe": not (found["torch_cuda_initialized"] or found["libcuda_loaded"]), "preload": PRELOAD}


def featviz_cli(*args: str, timeout: int = 600) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "featviz", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"})
    return proc, time.perf_counter() - start


def part_isolated_multirun(device: str, size: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, wall = featviz_cli("-m", f"device={device}", f"steps={size['sweep_steps']}", f"param.size={size['side']}", "logger=none",
                                 "progress=false", "isolate=true", "seed=0,1", f"hydra.sweep.dir={tmp}")
        results = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("*/result.json"))]
    return {"exit_code": proc.returncode, "wall_s": wall, "jobs": [{"status": r.get("status"), "device": r.get("device"),
            "steps_per_s": (r.get("final") or {}).get("steps_per_s"), "shared_model": r.get("shared_model")} for r in results],
            "error": proc.stderr[-1500:] if proc.returncode else ""}


def part_microscope(device: str, size: dict[str, Any]) -> dict[str, Any]:
    units = size["units"]
    with tempfile.TemporaryDirectory() as tmp:
        proc, wall = featviz_cli("microscope", f"device={device}", "microscope.layers=[blocks.1]", f"microscope.units=[{','.join(map(str, range(units)))}]",
                                 f"microscope.batch={min(units, 8)}", f"steps={size['sweep_steps']}", f"param.size={size['side']}",
                                 "progress=false", f"hydra.sweep.dir={tmp}")
    return {"exit_code": proc.returncode, "layer": "blocks.1", "units": units, "steps": size["sweep_steps"], "wall_s": wall,
            "units_per_hour_wall": units * 3600 / wall, "error": proc.stderr[-1500:] if proc.returncode else ""}


def part_lucent(device: str, size: dict[str, Any]) -> dict[str, Any]:
    if importlib.util.find_spec("lucent") is None:
        return {"skipped": "torch-lucent is not installed in this interpreter; run the check with the lucent venv's python (benchmarks/README.md) for this part"}
    spec = importlib.util.spec_from_file_location("vs_lucent", REPO / "benchmarks" / "vs_lucent.py")
    assert spec is not None and spec.loader is not None
    vs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vs)
    from lucent.optvis import param, render as lucent_render, transform

    steps = size["lucent_steps"]
    net = vs.efficientnet_lite("lite0", pretrained=True).eval().to(device)
    torch.manual_seed(0)
    sync(device)
    start = time.perf_counter()
    lucent_render.render_vis(net, vs.lucent_objective("middle"), param_f=lambda: param.image(128, decorrelate=True, fft=True),
                             optimizer=lambda p: torch.optim.Adam(p, lr=0.05), transforms=transform.standard_transforms,
                             thresholds=(steps,), progress=False, show_image=False)
    sync(device)
    lucent_s = time.perf_counter() - start
    featviz = one_render(build_model("efficientnet_lite0", device=device).optimize(), device, 128, 1, steps)
    featviz_s = featviz["seconds_per_step"] * steps
    return {"steps": steps, "lucent_s": lucent_s, "featviz_s_from_median_step": featviz_s, "speedup": lucent_s / featviz_s}


def part_batch_curve(device: str, size: dict[str, Any]) -> list[dict[str, Any]]:
    model = build_model("efficientnet_lite0", device=device).optimize()
    return [one_render(model, device, size["side"], batch, size["steps"]) for batch in size["batches"]]


def part_perf(device: str, size: dict[str, Any], compile_too: bool) -> list[dict[str, Any]]:
    rows = []
    for amp in ("none", "bf16"):
        for compiled in (False, True) if compile_too else (False,):
            model = build_model("efficientnet_lite0", device=device).optimize(PerfOptions(amp=amp, compile=compiled))
            rows.append({"amp": amp, "compile": compiled, **one_render(model, device, size["side"], size["perf_batch"], size["steps"])})
    return rows


def machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"device": device, "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
                            "threads": torch.get_num_threads()}
    if device == "cuda":
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="minimal sizes (the CPU test of this script)")
    parser.add_argument("--no-compile", action="store_true", help="leave out perf.compile (its first step compiles for a minute)")
    parser.add_argument("--pytest-k", default=None, help="only the device-aware tests matching this -k expression")
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/gpu_check_<device>.json")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but no CUDA GPU is visible; --device cpu --tiny checks the script itself", file=sys.stderr)
        return 2
    size = sizes(args.tiny)
    out = args.out or REPO / "benchmarks" / "results" / f"gpu_check_{args.device}.json"
    parts: dict[str, Callable[[], Any]] = {
        "suite": lambda: part_suite(args.device, args.pytest_k),
        "fork_server": lambda: part_fork_server(args.device),
        "isolated_multirun": lambda: part_isolated_multirun(args.device, size),
        "microscope": lambda: part_microscope(args.device, size),
        "lucent": lambda: part_lucent(args.device, size),
        "batch_curve": lambda: part_batch_curve(args.device, size),
        "perf": lambda: part_perf(args.device, size, not args.no_compile),
    }
    report: dict[str, Any] = {"machine": machine(args.device), "sizes": size}
    start = time.perf_counter()
    for name, part in parts.items():
        t0 = time.perf_counter()
        try:
            report[name] = part()
        except Exception as exc:  # noqa: BLE001 - one broken part must not cost the others their figures
            report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}
        print(f"gpu_check: {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    report["total_s"] = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"gpu_check: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
