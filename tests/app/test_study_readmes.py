"""Every study of experiments/ has a README with its question, a command featviz accepts and a
recorded result, and docs/gallery.md is the index of them that benchmarks/study.py writes."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import REPO
from hydra.core.override_parser.overrides_parser import OverridesParser

from featviz.app.cli import BY_NAME, _load
from featviz.app.config import compose, to_plain

STUDIES = REPO / "experiments"
ALL = sorted(p.name for p in STUDIES.iterdir() if (p / "config.yaml").is_file())
#: The config each Hydra subcommand composes (its ``@hydra.main`` config_name).
PRIMARY = {"render": "config", "units": "units", "microscope": "microscope"}


def study_script() -> ModuleType:
    """benchmarks/study.py, whose parser of the README's command block is the one under test."""
    spec = importlib.util.spec_from_file_location("featviz_study_script", REPO / "benchmarks" / "study.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and annotations look the module up
    spec.loader.exec_module(module)
    return module


STUDY = study_script()


def first_point(overrides: list[str]) -> list[str]:
    """A sweep's overrides at its first point (``a=1,2`` -> ``a=1``), so one composition checks every key."""
    parser = OverridesParser.create()
    point = []
    for text in overrides:
        override = parser.parse_override(text)
        if override.is_sweep_override():
            key = text.split("=", 1)[0]
            point.append(f"{key}={next(iter(override.sweep_string_iterator()))}")
        else:
            point.append(text)
    return point


def accepted(words: list[str]) -> None:
    """Fail unless featviz would accept the command line ``words`` (``featviz ...``) as it stands."""
    rest = [w for w in words[1:] if w not in ("-m", "--multirun")]
    name = rest[0] if rest and rest[0] in BY_NAME else "render"
    args = rest[1:] if rest and rest[0] in BY_NAME else rest
    command = BY_NAME[name]
    if command.kind == "hydra":
        cfg = compose(first_point(args), config_name=PRIMARY[name])
        to_plain(cfg)  # every interpolation resolves
        return
    parser = _load(command.parser)(f"featviz {name}")  # type: ignore[arg-type]
    try:
        parser.parse_args(args)
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"featviz {name} refuses {args}: exit {exc.code}")


@pytest.mark.parametrize("name", ALL)
def test_each_study_has_its_question_command_and_record(name: str) -> None:
    readme = (STUDIES / name / "README.md").read_text()
    assert readme.startswith("# "), name
    assert "**Question.**" in readme and "[`config.yaml`](config.yaml)" in readme, name
    assert STUDY.BEGIN in readme and STUDY.END in readme and readme.index(STUDY.BEGIN) < readme.index(STUDY.END), name
    lines = STUDY.commands(readme)
    assert lines, f"{name}: no featviz command in the README's Command block"
    assert any(f"+experiment={name}" in w for words in lines for w in words), f"{name}: the command does not run the study"
    for words in lines:
        accepted(words)
    record = readme[readme.index(STUDY.BEGIN) : readme.index(STUDY.END)]
    assert len(record.split()) > 20, f"{name}: the record says nothing"
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme):
        assert (STUDIES / name / link).is_file(), f"{name}: missing picture {link}"


def test_a_study_with_a_picture_shows_it_in_its_own_folder() -> None:
    """Pictures ship with the study (package data), so an installed featviz's READMEs are whole."""
    shown = [n for n in ALL if re.search(r"!\[[^\]]*\]\((?!\.\./)[^)]+\.(?:jpg|png)\)", (STUDIES / n / "README.md").read_text())]
    assert len(shown) >= 15, shown  # the 12 figures, the spectrum, vivid, the microscope


def test_the_gallery_page_is_the_index_of_every_study() -> None:
    page = (REPO / "docs" / "gallery.md").read_text()
    assert page == STUDY.index() + "\n", "docs/gallery.md is stale: run benchmarks/study.py --index"
    for name in ALL:
        assert f"../experiments/{name}/README.md" in page, name


def test_a_refused_command_fails_the_check() -> None:
    """The check above can fail: a key that does not exist and a report flag that does not exist."""
    with pytest.raises(Exception):
        accepted(["featviz", "-m", "+experiment=naive", "param.sizee=64"])
    with pytest.raises(pytest.fail.Exception):
        accepted(["featviz", "report", "outputs/x", "--no-such-flag"])
    accepted(["featviz", "-m", "+experiment=naive", "seed=0,1", "param.size=64"])


def test_quick_keeps_the_commands_shape() -> None:
    assert STUDY.quick(["featviz", "-m", "+experiment=naive"]) == ["featviz", "-m", "+experiment=naive", *STUDY.QUICK]
    assert STUDY.quick(["featviz", "report", "out", "--steps", "0,4", "--tile", "128"]) == ["featviz", "report", "out", "--tile", "128"]


def test_study_script_records_a_quick_run(tmp_path: Path) -> None:
    """benchmarks/study.py runs a README's command lines and rewrites the record (here into tmp_path)."""
    import subprocess

    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "study.py"), "naive", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    readme = (tmp_path / "naive" / "README.md").read_text()
    record = readme[readme.index(STUDY.BEGIN) : readme.index(STUDY.END)]
    assert "![naive](naive.jpg)" in record and "1 job, with `--quick`" in record and "load average" in record
    assert (tmp_path / "naive" / "naive.jpg").stat().st_size > 1000
    assert readme.split(STUDY.BEGIN)[0] == (STUDIES / "naive" / "README.md").read_text().split(STUDY.BEGIN)[0]
