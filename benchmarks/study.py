"""Re-run a study of ``experiments/`` and rewrite its recorded result; rebuild ``docs/gallery.md``.

    .venv/bin/python benchmarks/study.py naive                  # run experiments/naive/README.md's command, rewrite its record
    .venv/bin/python benchmarks/study.py naive frequency --quick --out /tmp/s   # 4 steps at 32 px, written elsewhere
    .venv/bin/python benchmarks/study.py --index                # only rebuild docs/gallery.md from the READMEs

A study's README holds its command in the first ``bash`` block under ``## Command``: one
``featviz ...`` line per step (the sweep, then ``featviz report``), exactly as a user types
them. This script runs those lines one after another in an empty working folder (``featviz``
is this interpreter's ``python -m featviz``), then replaces the README's section between the
``<!-- record -->`` markers with what they produced: the report's snapshot grid as
``NAME.jpg`` (at most ``--width`` px, so the repository stays small), its first effects
figures and its Effects table when the report line asks for ``--paper``, its metrics table when
the line picks ``--columns``, the number of runs, each command's wall
time, this machine's CPU and the 1-minute load average before and after, because on a shared
machine a time only means something with the load beside it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
STUDIES = REPO / "experiments"
GALLERY = REPO / "docs" / "gallery.md"
JPEG_QUALITY = 72
BEGIN, END = "<!-- record: written by benchmarks/study.py, edit above this line -->", "<!-- /record -->"
QUICK = ["steps=4", "param.size=32"]
#: The index's order: the article's figures as the article shows them, then the studies built on them.
FIGURES = ("naive", "lr_noise", "frequency", "robustness", "decorrelated", "objectives", "logits_vs_probs",
           "negative_positive", "diversity_facets", "neuron_arithmetic", "random_directions", "interpolation")
ABLATIONS = ("spectrum", "learned_priors", "scorecard", "pipeline", "vivid", "search", "microscope",
             "vit_mlp", "vit_attention", "swin_convnext")  # --quick: the command's shape at a fraction of its cost


def commands(readme: str) -> list[list[str]]:
    """The ``featviz`` command lines of the README's ``## Command`` block, split as a shell would."""
    section = readme.split("## Command", 1)
    if len(section) < 2:
        raise SystemExit("study: the README has no '## Command' section")
    block = re.search(r"```bash\n(.*?)```", section[1], re.S)
    if block is None:
        raise SystemExit("study: the '## Command' section has no ```bash block")
    text = block.group(1).replace("\\\n", " ")
    lines = [shlex.split(line, comments=True) for line in text.splitlines()]
    return [words for words in lines if words and words[0] == "featviz"]


def quick(words: list[str]) -> list[str]:
    """``words`` cut to a quick look: a render or sweep gets :data:`QUICK`; a report loses its ``--steps`` columns."""
    if len(words) > 1 and words[1] == "report":
        if "--steps" in words:
            i = words.index("--steps")
            words = words[:i] + words[i + 2 :]
        return words
    runs = len(words) == 1 or "=" in words[1] or words[1].startswith("-") or words[1] == "microscope"
    return [*words, *QUICK] if runs else words


def sweep_dir(words: list[str]) -> str | None:
    """The ``hydra.sweep.dir=`` a command line names, if any."""
    return next((w.split("=", 1)[1] for w in words if w.startswith("hydra.sweep.dir=")), None)


def unit_sheet(site: Path, per_layer: int = 16, tile: int = 64) -> Image.Image:
    """A microscope site's first ``per_layer`` units of every layer, one row per layer (numeric unit order)."""
    layers = sorted(p for p in (site / "layers").iterdir() if p.is_dir())
    rows = [sorted((p for p in (layer / "img").glob("*.png") if p.stem.isdigit()), key=lambda p: int(p.stem))[:per_layer] for layer in layers]
    sheet = Image.new("RGB", (tile * max(len(r) for r in rows), tile * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, path in enumerate(row):
            sheet.paste(Image.open(path).convert("RGB").resize((tile, tile), Image.LANCZOS), (x * tile, y * tile))
    return sheet


def save_picture(image: Image.Image, path: Path, width: int) -> None:
    """``image`` as a JPEG of at most ``width`` px."""
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.save(path, format="JPEG", quality=JPEG_QUALITY, optimize=True)


def machine() -> str:
    """This CPU in a few words: its model, cores and widest vector ISA."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "an unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model} ({os.cpu_count()} cores, {isa})"


def run_study(name: str, out: Path, work: Path, width: int, is_quick: bool) -> None:
    """Run ``name``'s command lines in ``work`` and write its README record and pictures into ``out``."""
    folder = STUDIES / name
    readme = (folder / "README.md").read_text()
    lines = [quick(w) if is_quick else w for w in commands(readme)]
    load_before = os.getloadavg()[0]
    timings = []
    for words in lines:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "featviz", *words[1:]], cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"study {name}: {shlex.join(words)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        timings.append((words, time.perf_counter() - start))
    load_after = os.getloadavg()[0]
    out.mkdir(parents=True, exist_ok=True)
    reports = [(work / w[2] / "report", "--paper" in w, "--columns" in w) for w in lines if len(w) > 2 and w[1] == "report"]
    record = [BEGIN, ""]
    for report, paper, columns in reports:
        grid = report / "grid.png"
        if grid.is_file():
            save_picture(Image.open(grid).convert("RGB"), out / f"{name}.jpg", width)
            record += [f"![{name}]({name}.jpg)", ""]
        for plot in sorted(report.glob("effects_*.png")) if paper else ():
            if re.search(r"_\d+\.png$", plot.name) is None and not plot.name.startswith("effects_differences"):
                shutil.copyfile(plot, out / f"{name}_{plot.name}")
                record += [f"![{plot.stem}]({name}_{plot.name})", ""]
        if columns and (report / "metrics.md").is_file():  # the study chose its columns: the table is the result
            record += [(report / "metrics.md").read_text().strip(), ""]
        table = report / "paper" / "effects_comparisons.md"
        if table.is_file():
            record += [table.read_text().strip(), ""]
    for words in lines:
        folder = sweep_dir(words)
        if len(words) > 1 and words[1] == "microscope" and folder and (work / folder / "site" / "layers").is_dir():
            site = work / folder / "site" / "layers"
            save_picture(unit_sheet(site.parent), out / f"{name}.jpg", width)
            units = {layer.name: sum(1 for p in (layer / "img").glob("*.png") if p.stem.isdigit()) for layer in sorted(site.iterdir())}
            record += [f"![{name}: the first units of each layer, one row per layer]({name}.jpg)", "",
                       "Units rendered: " + ", ".join(f"`{k}` {v}" for k, v in units.items()) + ".", ""]
    done = sum(len(list((work / folder).glob("*/result.json"))) for folder in {sweep_dir(w) for w in lines} - {None})
    times = "; ".join(f"`{shlex.join(w[:2])} ...` {s:.1f} s" for w, s in timings)
    size = "with `--quick` (" + " ".join(QUICK) + "), " if is_quick else ""
    record += [f"{done} job{'s' * (done != 1)}, {size}on {machine()}: {times}; "
               f"load average {load_before:.1f} before, {load_after:.1f} after ({datetime.date.today().isoformat()}).", "", END]
    text = readme
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + "\n".join(record) + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n## Recorded result\n\n" + "\n".join(record) + "\n"
    (out / "README.md").write_text(text)


def index() -> str:
    """``docs/gallery.md``: every study's title, question and picture, linked to its folder."""
    lines = ["# Studies: the article's figures and the ablations", "",
             "Every study is a folder of [`experiments/`](../experiments/) (also shipped in the package as",
             "`featviz.experiments`, so an installed featviz runs `featviz +experiment=NAME`): its",
             "config, a README with the question, the exact command and the recorded result (picture,",
             "effects table, run time, machine and load). `benchmarks/study.py NAME` re-runs a study and",
             "rewrites its record; this page is rebuilt from the READMEs by `benchmarks/study.py --index`.", ""]
    present = sorted(p.name for p in STUDIES.iterdir() if (p / "README.md").is_file())
    others = [n for n in present if n not in FIGURES and n not in ABLATIONS]
    for heading, names in (("The article's figures", FIGURES), ("Ablations and studies", [*ABLATIONS, *others])):
        lines += [f"## {heading}", ""]
        for name in (n for n in names if n in present):
            readme = (STUDIES / name / "README.md").read_text()
            title = readme.splitlines()[0].lstrip("# ").strip()
            question = re.search(r"\*\*Question\.\*\*\s*(.*?)\n\n", readme, re.S)
            lines += [f"### [{title}](../experiments/{name}/README.md)", ""]
            if question:
                lines += [" ".join(question.group(1).split()), ""]
            picture = re.search(r"!\[[^\]]*\]\(([^)]+\.(?:jpg|png))\)", readme.split(BEGIN, 1)[-1])
            if picture:
                lines += [f"![{name}](../experiments/{name}/{picture.group(1)})", ""]
            lines += [f"`featviz -m +experiment={name}`" if name != "microscope" else "`featviz microscope +experiment=microscope`", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="studies (folders of experiments/) to re-run")
    ap.add_argument("--out", type=Path, default=None, help="write README and pictures to OUT/NAME instead of experiments/NAME")
    ap.add_argument("--quick", action="store_true", help="4 steps at 32 px: check the commands, not the result")
    ap.add_argument("--width", type=int, default=720, help="largest picture width in px")
    ap.add_argument("--index", action="store_true", help="rebuild docs/gallery.md (also done after every run into experiments/)")
    args = ap.parse_args()
    unknown = [n for n in args.names if not (STUDIES / n / "README.md").is_file()]
    if unknown:
        raise SystemExit(f"study: no experiments/NAME/README.md for {', '.join(unknown)}")
    for name in args.names:
        with tempfile.TemporaryDirectory(prefix=f"featviz-study-{name}-") as tmp:
            run_study(name, (args.out / name) if args.out else STUDIES / name, Path(tmp), args.width, args.quick)
        print(f"study {name}: recorded", flush=True)
    if args.index or (args.names and args.out is None):
        GALLERY.write_text(index() + "\n")


if __name__ == "__main__":
    main()
