"""Measure the article's claim: unregularized pixel optimization reaches a huge logit with
a high-frequency pattern that stops working under transformations it was not optimized
with; decorrelation plus transformation robustness gives an image that keeps working.

Runs class-logit sweeps on the embedded model, one per (parameterization, transforms)
pair (each over classes x seeds), then ``featviz report`` twice on the parent directory: a
table per class averaged over seeds, and a grid of one class and seed. CPU only; the
default is 8 runs of 200 steps (30 s to a few minutes each, depending on how busy the
cores are)::

    python benchmarks/transfer_table.py --docs docs        # sweeps + report, copied to docs/
    python benchmarks/transfer_table.py --configs pixel:none,pixel:standard,fft:none,fft:standard
    python benchmarks/transfer_table.py --report-only      # report existing sweeps again
    python benchmarks/transfer_table.py --report-only --view-sensitivity 16   # ranking under other view families
    python benchmarks/transfer_table.py --steps 8 --seeds 0 --classes 281 --out outputs/transfer-smoke   # smoke test

It prints whether the measured numbers show the claim (exit code 1 if they do not).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def sweep(out: Path, param: str, transforms: str, steps: int, seeds: str, classes: str, size: int) -> None:
    """One hydra multirun over classes x seeds for one (param, transforms) pair."""
    snaps = sorted({0, steps // 8, steps // 4, steps // 2, steps})
    cmd = [
        sys.executable, "-m", "featviz", "-m",
        "objective=class_logit", f"objective.unit={classes}", f"param={param}", f"transforms={transforms}", f"seed={seeds}",
        f"steps={steps}", f"param.size={size}", f"snapshots=[{','.join(map(str, snaps))}]",
        "logger=none", "progress=false", f"hydra.sweep.dir={out / f'{param}-{transforms}'}",
    ]  # fmt: skip
    print("+ python", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def verdict(table_csv: Path) -> bool:
    """Per class, pixel+none vs fft+standard: higher source logit but lower robust scores and higher hf share?"""
    rows = {(r.get("objective.unit", ""), r["param"], r["transforms"]): r for r in csv.DictReader(table_csv.open())}
    ok = True
    for unit in sorted({k[0] for k in rows}):
        pix, fft = rows[(unit, "pixel", "none")], rows[(unit, "fft", "standard")]
        checks = {
            "pixel+none reaches the higher clean source logit": float(pix["objective_clean"]) > float(fft["objective_clean"]),
            "fft+standard has the higher robust/prob": float(fft["robust/prob"]) > float(pix["robust/prob"]),
            "fft+standard has the higher robust/top5": float(fft["robust/top5"]) > float(pix["robust/top5"]),
            "fft+standard has the lower hf_share": float(fft["hf_share"]) < float(pix["hf_share"]),
        }
        for name, passed in checks.items():
            print(f"{'yes' if passed else 'NO '}  class {unit}: {name}")
        ok = ok and all(checks.values())
    return ok


#: View families for --view-sensitivity: the default and three single-ingredient variants.
VIEW_FAMILIES = {
    "default": {},
    "no crop": {"crop": (1.0, 1.0)},
    "blur only": {"crop": (1.0, 1.0), "flip": False, "downscale": (1.0, 1.0)},
    "flip only": {"crop": (1.0, 1.0), "downscale": (1.0, 1.0), "blur": (0.0, 0.0)},
}


def view_sensitivity(out: Path, views: int) -> str:
    """Re-score every final.png under each view family: does the ranking depend on the views?"""
    import json
    import statistics

    import torch

    from featviz.images import load_png
    from featviz.metrics.views import UnseenViews, view_metrics
    from featviz.models import build_model
    from featviz.objectives.units import class_logit

    model = build_model("efficientnet_lite0")
    cells: dict[tuple[str, str, str], dict[str, list[tuple[float, float]]]] = {}
    for path in sorted(out.glob("*/*/result.json")):
        overrides = dict(o.split("=", 1) for o in json.loads(path.read_text())["overrides"])
        unit = int(overrides["objective.unit"])
        key = (str(unit), overrides["param"], overrides["transforms"])
        image = load_png(path.parent / "final.png")[None]
        for name, kw in VIEW_FAMILIES.items():
            r = view_metrics(model, class_logit(unit), image, UnseenViews(**kw), views, torch.Generator().manual_seed(0))
            cells.setdefault(key, {}).setdefault(name, []).append((r["top5"], r["prob"]))
    lines = ["| class | param | transforms | " + " | ".join(f"{n}: top5 / prob" for n in VIEW_FAMILIES) + " |"]
    lines.append("| --- | --- | --- | " + " | ".join("---:" for _ in VIEW_FAMILIES) + " |")
    for key in sorted(cells):
        vals = [cells[key][n] for n in VIEW_FAMILIES]
        lines.append("| " + " | ".join(key) + " | " + " | ".join(f"{statistics.fmean(a for a, _ in v):.2f} / {statistics.fmean(b for _, b in v):.3g}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "multirun" / "transfer_table", help="sweep directory")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    ap.add_argument("--classes", default="281,967", help="comma-separated ImageNet classes (281 tabby, 967 espresso)")
    ap.add_argument("--size", type=int, default=128, help="param.size in pixels")
    ap.add_argument("--configs", default="pixel:none,fft:standard", help="comma-separated param:transforms pairs (must include these two)")
    ap.add_argument("--docs", type=Path, default=None, help="also copy the grid and tables here (docs/ for the README)")
    ap.add_argument("--report-only", action="store_true", help="skip the sweep, report an existing one")
    ap.add_argument("--view-sensitivity", type=int, default=0, metavar="N", help="also re-score each final image under N views of each view family")
    args = ap.parse_args(argv)

    if not args.report_only:
        for pair in args.configs.split(","):
            param, _, transforms = pair.partition(":")
            sweep(args.out, param, transforms, args.steps, args.seeds, args.classes, args.size)
    from featviz.app.cli import main as featviz_cli

    table_dir, grid_dir = args.out / "report_table", args.out / "report_grid"
    first_class, first_seed = args.classes.split(",")[0], args.seeds.split(",")[0]
    columns = "objective_clean,clean/prob,robust/objective,robust/top1,robust/top5,robust/prob,hf_share,spectral_slope,tv,steps_to_90"
    common = [str(args.out), "--sort", "robust/prob", "--desc"]
    rc = featviz_cli(["report", *common, "--out", str(table_dir), "--mean-over", "seed", "--columns", columns, "--no-grid"])
    grid_steps = ",".join(map(str, sorted({0, args.steps // 8, args.steps // 2, args.steps})))
    where = ["--where", f"seed={first_seed}", "--where", f"objective.unit={first_class}"]
    rc = rc or featviz_cli(["report", *common, "--out", str(grid_dir), *where, "--steps", grid_steps, "--tile", "80"])
    if rc:
        return rc
    if args.docs is not None:
        args.docs.mkdir(parents=True, exist_ok=True)
        (args.docs / "img").mkdir(exist_ok=True)
        (args.docs / "img" / "transfer_grid.png").write_bytes((grid_dir / "grid.png").read_bytes())
        for ext in ("md", "csv", "tex"):
            (args.docs / f"transfer_table.{ext}").write_bytes((table_dir / f"metrics.{ext}").read_bytes())
        print(f"copied grid and tables into {args.docs}")
    if args.view_sensitivity:
        table = view_sensitivity(args.out, args.view_sensitivity)
        print(table, end="")
        if args.docs is not None:
            (args.docs / "transfer_view_sensitivity.md").write_text(table)
    return 0 if verdict(table_dir / "metrics.csv") else 1


if __name__ == "__main__":
    sys.exit(main())
