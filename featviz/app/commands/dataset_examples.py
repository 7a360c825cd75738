"""featviz dataset-examples FOLDER: the natural images that most and least excite a unit."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import torch

from featviz.errors import DatasetError
from featviz.images import load_png, to_uint8
from featviz.models import build_model
from featviz.render import resolve_device
from featviz.tools.dataset_examples import (
    REDUCTIONS,
    receptive_field,
    save_examples,
    score_folder,
    unit_direction,
)


def log_to_wandb(out_dir: Path, summary: dict[str, Any], mode: str, project: str, group: str | None, optimized: dict[str, torch.Tensor]) -> str:
    """One W&B run (job type ``dataset-examples``) with the pictures and the optimized images.

    Uses the tracking package's run settings (offline by default, files in ``out_dir``);
    ``group`` puts the run beside the optimization runs of the same unit on the dashboard.
    """
    import wandb

    from featviz.app.tracking.session import start_run, sync_hint

    target = summary.get("target", "unit")
    run = start_run(
        {"mode": mode, "project": project},
        run_dir=out_dir,
        name=f"dataset-examples {summary.get('layer')}:{target}",
        group=group,
        job_type="dataset-examples",
        config={k: v for k, v in summary.items() if not isinstance(v, (list, dict))},
        tags=["dataset-examples"],
    )
    try:
        row: dict[str, Any] = {}
        for name in ("top", "bottom", "top_patches", "bottom_patches", "spectrum"):
            row[f"dataset_examples/{name}"] = wandb.Image(str(out_dir / f"{name}.png"), caption=f"{summary.get('layer')}:{target} {name}")
        for name, img in optimized.items():
            row[f"optimized/{name}"] = wandb.Image(to_uint8(img), caption=f"{name} optimized, {summary.get('layer')}:{target}")
        run.log(row)
        run.summary.update({f"score/{k}": v for k, v in summary["score_stats"].items()})
        hint = sync_hint(run)
    finally:
        run.finish()
    return hint


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Score every image of a folder for one unit and save the top/bottom images, receptive-field patches and the activation spectrum.",
    )
    p.add_argument("folder", help="a flat folder of JPEG/PNG files, or an ImageFolder tree (one sub-folder per class)")
    p.add_argument("--layer", required=True, help="layer name, as `featviz layers` lists them (e.g. blocks.10)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--unit", type=int, help="channel index")
    target.add_argument("--direction-seed", type=int, help="a random direction, the same one as objective=random_direction objective.seed=S")
    p.add_argument("--model", default="efficientnet_lite0", help="model name (default: the embedded efficientnet_lite0)")
    p.add_argument("--weights", default="imagenet", help="imagenet | none | /path/to/state_dict.pth")
    p.add_argument("--size", type=int, default=None, help="image side the network sees (default: the model's input size)")
    p.add_argument("-k", "--k", type=int, default=8, help="images per group (default 8)")
    p.add_argument("--reduce", choices=REDUCTIONS, default="mean", help="image score: mean over positions (as the channel objective) or max")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--rf-mass", type=float, default=0.95, help="patch = square holding this share of the gradient (1.0 = theoretical receptive field)")
    p.add_argument("--out", default=None, help="output folder (default outputs/dataset_examples/<model>/<layer>/<unit>/<date>_<time>)")
    p.add_argument("--positive", type=Path, help="an optimized image (PNG) of the unit, shown after the maximum row")
    p.add_argument("--negative", type=Path, help="a negatively optimized image (PNG), shown before the minimum row")
    p.add_argument("--wandb", choices=("offline", "online"), default=None, help="also log to W&B (offline needs no server)")
    p.add_argument("--wandb-project", default="featviz")
    p.add_argument("--wandb-group", default=None, help="W&B group, e.g. the sweep folder of the optimization runs of this unit")
    return p


def run(args: argparse.Namespace) -> str:
    """Score the folder, write the pictures (and the W&B run); says where they are."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="featviz: %(message)s")
    direction = unit_direction(args.layer, args.unit, args.direction_seed)
    target = f"unit_{args.unit}" if args.unit is not None else f"random_{args.direction_seed}"
    optimized = {}
    for name, path in (("positive", args.positive), ("negative", args.negative)):
        if path is not None:
            if not path.is_file():
                raise DatasetError(f"--{name} {str(path)!r} is not a file; pass an optimized image such as outputs/runs/.../final_0.png")
            optimized[name] = load_png(path)
    device = resolve_device(args.device)
    model = build_model(args.model, weights=args.weights, device=device)
    model.check_layers([args.layer])
    result = score_folder(model, args.folder, direction, args.size, args.batch_size, args.reduce, args.workers, device)
    rf = receptive_field(model, args.layer, result.image_size, args.rf_mass)
    # A timestamped default folder: a second search for the same unit (another folder of
    # photos, another --k) never overwrites the first one's pictures.
    out = Path(args.out or Path("outputs") / "dataset_examples" / args.model / args.layer / target / time.strftime("%Y-%m-%d_%H-%M-%S"))
    info = {"model": args.model, "weights": args.weights, "layer": args.layer, "target": target, "folder": str(args.folder)}
    summary = save_examples(result, out, args.k, rf, optimized.get("positive"), optimized.get("negative"), info)
    stats = summary["score_stats"]
    message = (
        f"featviz: scored {summary['images_scored']} images for {args.layer}:{target} "
        f"(score {stats['min']:.3g}..{stats['max']:.3g}, {stats['negative']} negative); patches {rf} px; pictures in {out}"
    )
    if args.wandb:
        message += f"\nfeatviz: {log_to_wandb(out, summary, args.wandb, args.wandb_project, args.wandb_group, optimized)}"
    return message
