"""How close a default render step is to this CPU's arithmetic limit.

Not a test: a measurement to run by hand (docs/performance.md has the figures). For each
layer it counts the floating-point operations of one default step (``featviz.render``'s
defaults, which are the command line's: 128 px FFT image, the standard transforms resized to
224 px, Adam) with ``torch.utils.flop_counter.FlopCounterMode``, times the same step with
the default speed-ups, and sets the achieved rate against the machine's FP32 peak:
cores x FMA lanes (vector width / 32 bits) x FMA units x 2 x clock, from ``lscpu`` and
``/proc/cpuinfo``. The counter knows convolutions and matrix products (the FFT, the resample
and the elementwise ops are left out: a lower bound on the work, so an upper bound on the
room left is not overstated). The fused conv+activation calls of the default speed-ups are
oneDNN ops the counter does not know, so the count runs on the same network unfused (the same
arithmetic). ::

    python benchmarks/step_flops.py                       # blocks.3 and blocks.10, 24 timed steps
    python benchmarks/step_flops.py --layers blocks.2 blocks.10 --steps 48 --fma-units 1
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import subprocess

from torch.utils.flop_counter import FlopCounterMode

import featviz
from featviz.models import build_model
from featviz.models.speedups.options import PerfOptions

MODEL = "efficientnet_lite0"


def load() -> str:
    """The load average, written beside every figure (a shared machine's timings need it)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def peak(fma_units: int) -> tuple[float, str]:
    """FP32 peak in FLOP/s and the assumptions it rests on, read from lscpu and /proc/cpuinfo."""
    flags = set(open("/proc/cpuinfo", encoding="utf-8").read().split())
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cores = len(os.sched_getaffinity(0))
    mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", open("/proc/cpuinfo", encoding="utf-8").read())
    clock = float(mhz.group(1)) * 1e6 if mhz else float("nan")
    bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper().startswith("AVX2"):
        bits = 256  # the AVX2 emulation: oneDNN (the convolutions) limited to 256-bit vectors
    name = re.search(r"Model name:\s*(.+)", lscpu)
    lanes = bits // 32
    value = cores * lanes * fma_units * 2 * clock
    what = (f"{name.group(1).strip() if name else '?'}: {cores} cores x {lanes} FP32 lanes ({bits}-bit) x {fma_units} FMA units x 2 "
            f"x {clock / 1e9:.2f} GHz (nominal; turbo and AVX-512 clock offsets not modelled)")
    return value, what


def step_flops(layer: str, unit: int) -> float:
    """FLOPs of one step: two-step run minus one-step run (each ends with one more forward)."""
    net = build_model(MODEL, device="cpu")
    net.optimize(PerfOptions(fuse_activations=False), keep=[layer])
    counts = []
    for steps in (1, 2):
        with FlopCounterMode(display=False) as counter:
            featviz.render(net, f"{layer}:{unit}", steps=steps, progress=False)
        counts.append(counter.get_total_flops())
    return float(counts[1] - counts[0])


def step_seconds(net: featviz.FeatureModel, layer: str, unit: int, steps: int) -> float:
    """Seconds per step of the default render (speed-ups on), after 4 warm-up steps."""
    featviz.render(net, f"{layer}:{unit}", steps=4, progress=False)
    result = featviz.render(net, f"{layer}:{unit}", steps=steps, progress=False)
    return 1.0 / result.final["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", nargs="+", default=["blocks.3", "blocks.10"])
    parser.add_argument("--unit", type=int, default=0)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--fma-units", type=int, default=2, help="FMA units per core (2 on server Xeons; 1 on some parts)")
    args = parser.parse_args()
    value, what = peak(args.fma_units)
    print(f"peak {value / 1e9:.1f} GFLOP/s: {what}")
    base = build_model(MODEL, device="cpu")
    for layer in args.layers:
        flops = step_flops(layer, args.unit)
        net = copy.deepcopy(base)
        net.optimize(PerfOptions(), keep=[layer])
        before = load()
        seconds = step_seconds(net, layer, args.unit, args.steps)
        rate = flops / seconds
        print(f"{layer}: {flops / 1e9:.2f} GFLOP/step, {seconds * 1e3:.0f} ms/step, {rate / 1e9:.1f} GFLOP/s = {100 * rate / value:.1f} % of peak "
              f"(load {before} before, {load()} after)")


if __name__ == "__main__":
    main()
