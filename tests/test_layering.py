"""The library stands apart from the app: it imports with hydra, omegaconf and wandb blocked,
and no featviz module imports one that imports it back (imports inside functions count)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "featviz"
APP = ("featviz.app", "featviz.__main__")


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        names[name.removesuffix(".__init__")] = path
    return names


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The featviz modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets |= {base} | {f"{base}.{a.name}" for a in node.names}
    found = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def test_no_import_cycles() -> None:
    known = module_names()
    graph = {m: {t for t in imported(m, p, known) if not t.startswith(m + ".")} for m, p in known.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return False

    cycles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
    assert not cycles, cycles


def test_library_never_imports_the_app() -> None:
    known = module_names()
    library = [m for m in known if not m.startswith(APP)]
    offenders = {m: sorted(t for t in imported(m, known[m], known) if t.startswith(APP)) for m in library}
    assert not {m: t for m, t in offenders.items() if t}


BLOCKER = """
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("hydra", "omegaconf", "wandb"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
for name in sys.argv[1:]:
    importlib.import_module(name)
import featviz
print("ok", len(sys.argv) - 1)
"""


def test_every_library_module_imports_without_hydra_omegaconf_or_wandb() -> None:
    library = [m for m in module_names() if not m.startswith(APP)]
    proc = subprocess.run([sys.executable, "-c", BLOCKER, *library], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"ok {len(library)}"
