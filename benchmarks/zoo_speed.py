"""Seconds per optimization step of the timm and open_clip networks, random init, on this machine.

Not a test: a measurement to run by hand (docs/models.md has the figures). Each row builds
one network (``weights=none``: nothing to download), renders ``--warmup`` steps that are not
timed, then ``--steps`` timed steps of a channel (or clip_text) objective at the model's
own input side (``transforms.resize`` on: what a user's run costs), with the default
speed-ups. The 1-minute load average before and after each row is printed beside it: on a
shared machine a figure means little without it. ::

    python benchmarks/zoo_speed.py
    python benchmarks/zoo_speed.py --only resnet18 ViT-B-32 --steps 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from featviz.app.build import build_run
from featviz.render import render

#: (label, model group, objective, batch): the networks docs/models.md lists.
ROWS: list[tuple[str, dict, dict, int]] = [
    ("resnet18", {"name": "timm", "arch": "resnet18"}, {"kind": "channel", "layer": "layer3", "unit": 0}, 1),
    ("convnext_atto", {"name": "timm", "arch": "convnext_atto"}, {"kind": "channel", "layer": "stages.2", "unit": 0}, 1),
    ("swin_tiny_patch4_window7_224", {"name": "timm", "arch": "swin_tiny_patch4_window7_224"}, {"kind": "channel", "layer": "layers.2", "unit": 0}, 1),
    ("vit_small_patch16_224", {"name": "timm", "arch": "vit_small_patch16_224"}, {"kind": "neuron", "layer": "blocks.8.mlp.fc1", "unit": 0}, 1),
    ("vit_small_patch14_reg4_dinov2", {"name": "timm", "arch": "vit_small_patch14_reg4_dinov2"}, {"kind": "token", "layer": "blocks.8", "token": 0}, 1),
    ("ViT-B-32", {"name": "open_clip", "arch": "ViT-B-32"}, {"kind": "clip_text", "text": "a photo of a dog"}, 1),
]


def measure(model: dict, objective: dict, batch: int, steps: int, warmup: int, size: int) -> dict:
    """Build, warm up, then time ``steps`` steps; seconds per step and the loads around it."""
    cfg = {"model": {**model, "weights": "none"}, "objective": objective, "param": {"kind": "fft", "size": size}, "batch": batch,
           "steps": warmup + steps, "device": "cpu", "metrics": {"enabled": False}, "progress": False}
    started = time.perf_counter()
    parts = build_run(cfg)
    built = time.perf_counter() - started
    run = (parts.model, parts.objective, parts.param, parts.transforms, parts.regularizers, parts.optimizer)
    load_before = os.getloadavg()[0]
    render(*run, steps=warmup, generator=parts.generator, device="cpu")
    started = time.perf_counter()
    render(*run, steps=steps, generator=parts.generator, device="cpu")
    per_step = (time.perf_counter() - started) / steps
    return {"input": parts.model.input_size, "build_s": round(built, 2), "s_per_step": round(per_step, 3),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="labels of ROWS to run (default: all)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=128, help="param.size: the image's side before the resize to the model's")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for label, model, objective, batch in ROWS:
        if args.only and label not in args.only:
            continue
        row = {"model": label, "threads": torch.get_num_threads(), **measure(model, objective, batch, args.steps, args.warmup, args.size)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
