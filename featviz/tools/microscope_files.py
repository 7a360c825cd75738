"""The files a microscope shard leaves for each unit, and reading them back.

A shard job (``featviz microscope``) renders units a batch at a time and saves, per unit,
``microscope/<layer>/<unit>.png`` (the visualization), optional ``<unit>.facets.png`` /
``<unit>.top.png`` / ``<unit>.bottom.png`` (diverse facets, dataset examples) and last
``<unit>.json`` (its record). Every file is written atomically and the record only after
its images, so a record on disk means the unit is done: that is the shard's checkpoint, and
a killed shard resumes with the first batch that lacks one. The site writer
(:mod:`featviz.tools.microscope_site`) reads the records of every shard of a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featviz.images import save_json
from featviz.rundir import job_order, read_json

UNITS_DIR = "microscope"
SHARD_NAME = "shard.json"  # the shard's config, written before its first unit
IMAGES = ("png", "facets.png", "top.png", "bottom.png")  # the image files a unit may have, by suffix


@dataclass(frozen=True)
class UnitFiles:
    """Where one unit's files are: ``<root>/microscope/<layer>/<unit>.<suffix>``."""

    root: Path
    layer: str
    unit: int

    def path(self, suffix: str) -> Path:
        return self.root / UNITS_DIR / self.layer / f"{self.unit}.{suffix}"

    @property
    def record_path(self) -> Path:
        return self.path("json")

    @property
    def done(self) -> bool:
        return self.record_path.is_file()

    def write_record(self, record: dict[str, Any]) -> None:
        """Save the record, after the images it describes: from now on the unit counts as done."""
        save_json({"layer": self.layer, "unit": self.unit, **record}, self.record_path)

    def read_record(self) -> dict[str, Any] | None:
        return read_json(self.record_path)


@dataclass
class UnitEntry:
    """A finished unit as read back: its files and its record (``activation``, ``metrics``, ...)."""

    files: UnitFiles
    record: dict[str, Any]

    @property
    def layer(self) -> str:
        return self.files.layer

    @property
    def unit(self) -> int:
        return self.files.unit


def shard_folders(sweep_dir: str | Path) -> list[Path]:
    """The job folders of a microscope sweep (those holding a ``microscope/shard.json``), in job order."""
    root = Path(sweep_dir)
    found = [p.parent.parent for p in root.glob(f"*/{UNITS_DIR}/{SHARD_NAME}")]
    return sorted(found, key=lambda p: job_order(p.name))


def read_units(sweep_dir: str | Path) -> list[UnitEntry]:
    """Every finished unit of every shard of ``sweep_dir``, by layer (in the config's order) and unit."""
    entries: list[UnitEntry] = []
    order: dict[str, int] = {}
    for folder in shard_folders(sweep_dir):
        shard = read_json(folder / UNITS_DIR / SHARD_NAME) or {}
        for layer in shard.get("layers") or []:
            order.setdefault(str(layer), len(order))
        for path in (folder / UNITS_DIR).glob("*/*.json"):
            record = read_json(path)
            if record is not None and path.stem.isdigit():
                entries.append(UnitEntry(UnitFiles(folder, path.parent.name, int(path.stem)), record))
    return sorted(entries, key=lambda e: (order.get(e.layer, len(order)), e.layer, e.unit))
