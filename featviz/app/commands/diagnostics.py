"""``featviz checkerboard`` and ``featviz directions``: the diagnostics figures, configured like a render."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from featviz.app.build import model_from_config
from featviz.app.commands import config_parser
from featviz.app.config import compose
from featviz.errors import ConfigError
from featviz.images import load_png, save_json, save_png
from featviz.models import FeatureModel
from featviz.objectives import build_objective
from featviz.render import resolve_device
from featviz.tools.diagnostics import (
    checkerboard_figure,
    checkerboard_maps,
    direction_image,
    directions_figure,
    magnitude_image,
    noise_image,
    probe_images,
    spatial_layers,
    steepest_directions,
)


def _model(cfg: DictConfig) -> FeatureModel:
    return model_from_config(cfg.model, resolve_device(cfg.device))


def checkerboard_parser(prog: str) -> argparse.ArgumentParser:
    cb = config_parser(prog, "Input-gradient magnitude of one unit per layer: strided layers leave checkerboards.")
    cb.add_argument("--layers", help="comma-separated layer names (default: one per change of activation shape)")
    cb.add_argument("--unit", type=int, default=None, help="channel index (default: the most active channel of each layer)")
    cb.add_argument("--input", default="grey", choices=["grey", "noise"], help="image(s) to differentiate at (default grey)")
    cb.add_argument("--samples", type=int, default=4, help="with --input noise: images the maps are averaged over")
    cb.add_argument("--size", type=int, default=None, help="input side in pixels (default: the model's input size)")
    return _common(cb)


def directions_parser(prog: str) -> argparse.ArgumentParser:
    dr = config_parser(prog, "Steepest-ascent directions of the objective: L-inf, L2 and decorrelated.")
    dr.add_argument("--image", help="PNG/JPEG to differentiate at (default: a seeded 1/f noise image)")
    dr.add_argument("--size", type=int, default=None, help="image side in pixels (default: param.size)")
    dr.add_argument("--decay", type=float, default=1.0, help="1/f^decay scaling of the decorrelated space")
    return _common(dr)


def _common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", help="output folder (default: outputs/diagnostics/<command>-<model>)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run_checkerboard(args: argparse.Namespace) -> str:
    """Write ``<out>/<layer>.png`` per layer, ``checkerboard.png`` (all, labelled, with colour scales) and a JSON summary."""
    cfg = compose(args.overrides)
    model = _model(cfg)
    size = args.size or model.input_size
    layers = args.layers.split(",") if args.layers else spatial_layers(model, size)
    model.check_layers(layers)
    images = probe_images(args.input, size, args.samples, torch.Generator().manual_seed(args.seed))
    maps = checkerboard_maps(model, layers, images, unit=args.unit)
    out = Path(args.out or f"outputs/diagnostics/checkerboard-{cfg.model.name}")
    for layer, info in maps.items():
        save_png(magnitude_image(info["map"]), out / f"{layer}.png")  # type: ignore[arg-type]
    checkerboard_figure(maps, out / "checkerboard.png")
    summary = {
        "model": cfg.model.name,
        "size": size,
        "input": args.input,
        "samples": args.samples if args.input == "noise" else 1,
        "seed": args.seed,
        "layers": {k: {kk: vv for kk, vv in v.items() if kk != "map"} for k, v in maps.items()},
    }
    save_json(summary, out / "checkerboard.json")
    lines = [f"{layer:<14} unit {info['unit']:>4}  stride {info['stride']:>2}  phase contrast {info['phase_contrast_2']:.3f}" for layer, info in maps.items()]
    return "\n".join([*lines, f"featviz: images in {out}"])


def run_directions(args: argparse.Namespace) -> str:
    """Write ``image.png``, ``linf.png``, ``l2.png``, ``decorrelated.png`` and ``directions.png`` (all four, titled)."""
    if args.image and not Path(args.image).is_file():
        raise ConfigError(f"--image {args.image!r} does not exist; pass a PNG/JPEG path or leave it out for a 1/f noise image")
    cfg = compose(args.overrides)
    model = _model(cfg)
    objective = build_objective(**dict(cfg.objective))
    size = args.size or int(cfg.param.size)
    if args.image:
        image = load_png(args.image)[None]
        image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    else:
        image = noise_image(size, torch.Generator().manual_seed(args.seed))
    image = image.to(model.mean.device)
    directions = steepest_directions(model, objective, image, decay=args.decay)
    out = Path(args.out or f"outputs/diagnostics/directions-{cfg.model.name}")
    panels = {"image": image[0], **{k: direction_image(v[0]) for k, v in directions.items()}}
    for name, img in panels.items():
        save_png(img, out / f"{name}.png")
    directions_figure({k: p.cpu() for k, p in panels.items()}, out / "directions.png")
    return f"objective {objective}; panels: {', '.join(panels)}\nfeatviz: images in {out}"
