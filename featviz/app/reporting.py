"""One voice for every command's mistakes: one line, ``featviz[ NAME]: error: ...``, exit code 2.

Every subcommand reports bad input through :func:`report`: a :class:`~featviz.errors.FeatvizError`,
Hydra's and OmegaConf's composition errors (a misspelt choice, an unknown key, a value of the
wrong type: :func:`hydra_message`, with the closest valid names), and an OS error on a path the
user gave. A message from another library (torch's multi-paragraph advice, ANSI colour codes)
is cut to one plain line (:func:`one_line`). Exit code 2 is a usage error, as for argparse.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from featviz.errors import closest

USAGE_ERROR = 2
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(text: str) -> str:
    """``text`` as one plain line: ANSI codes out, and of several lines the first one plus the
    fix a featviz message puts after an embedded library error (``...); delete it to ...``)."""
    lines = [line.strip() for line in _ANSI.sub("", str(text)).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    tail = lines[-1]
    fix = tail[tail.rfind(")") + 1 :] if ")" in tail else ""
    return f"{lines[0]} ...){fix}" if fix.startswith(";") else lines[0]


def report(prog: str, message: object) -> int:
    """Print ``PROG: error: MESSAGE`` on one line to stderr; returns the exit code (2)."""
    print(f"{prog}: error: {one_line(str(message))}", file=sys.stderr)
    return USAGE_ERROR


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed (Python's, or torch's CPU or CUDA allocator)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
    )


def _options(name: str, options: Iterable[str]) -> str:
    pool = sorted(options)
    near = closest(name, pool, n=4)
    if near:
        return f"did you mean {', '.join(near)}?"
    return f"the options are {', '.join(pool[:10])}{', ...' if len(pool) > 10 else ''}"


def _keys(node: object) -> list[str]:
    """The keys a config node (or its typed schema) takes."""
    try:
        return [str(k) for k in node.keys()]  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return []


def name_too_long(path: str) -> str:
    """One line for a run folder whose name is longer than the file system allows (NAME_MAX):
    Hydra makes the folder before any featviz code runs, so its OSError comes here."""
    parts = Path(path).parts or (path,)
    longest = max(parts, key=lambda p: len(os.fsencode(p)))
    existing = next((p for p in Path(path).parents if p.is_dir()), Path("."))
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    shown = longest if len(longest) <= 40 else f"{longest[:36]}..."
    return (
        f"the run folder name {shown!r} is {len(os.fsencode(longest))} bytes, longer than the file system allows ({limit}); "
        "choose a shorter one with hydra.run.dir=... (hydra.sweep.dir / hydra.sweep.subdir in a sweep), "
        "or shorten hydra.job.name or the override values the folder name is made of"
    )


def hydra_message(exc: BaseException) -> str | None:
    """One line for a Hydra or OmegaConf error about the overrides, or for a run folder name
    the file system refuses (None for anything else).

    A misspelt choice (``model=resnt``, ``objective=chanel``, ``+experiment=x``) names the
    closest options; an unknown key names the closest keys of its group (not Hydra's ``+key``
    hint: the typed groups refuse new keys); a wrong type names the key and the value.
    """
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    cause = exc.__cause__
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return name_too_long(str(exc.filename or ""))
    if isinstance(exc, MissingConfigException) and exc.options and exc.missing_cfg_file:
        group, _, name = str(exc.missing_cfg_file).rpartition("/")
        return f"{group}={name} is not one of the {group} options; {_options(name, exc.options)} (featviz render --help lists every group)"
    unknown = (ConfigKeyError, ConfigAttributeError)
    if isinstance(cause, unknown) or isinstance(exc, unknown):
        err = cause if isinstance(cause, unknown) else exc
        full_key = str(getattr(err, "full_key", "") or getattr(err, "key", ""))
        group, _, key = full_key.rpartition(".")
        known = _keys(getattr(err, "parent_node", None))
        if not known and dataclasses.is_dataclass(getattr(err, "object_type", None)):
            known = [f.name for f in dataclasses.fields(err.object_type)]
        near = closest(key, known, n=3) if known else []
        where = f"a key of {group}" if group else "a key of the config"
        hint = f"did you mean {', '.join(f'{group}.{k}' if group else k for k in near)}?" if near else f"the keys are {', '.join(sorted(known)[:12])}" if known else ""
        new = "" if group else f" (a key the config does not have, read by a command such as layers, is added with +{key}=...)"
        return f"{full_key} is not {where}; {hint}{new}".replace("; (", " (").rstrip("; ")
    if isinstance(exc, OverrideParseException):
        first = [line for line in str(exc).splitlines() if line.strip() and not line.startswith("See ")]
        return f"{': '.join(first[:2])} (an override is key=value; lists as key=[a,b], sweeps as key=a,b with -m)"
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        head = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = str(cause).splitlines()[0] if isinstance(cause, OmegaConfBaseException) and str(cause).strip() else ""
        override = head.removeprefix("Error merging override ").strip() if head.startswith("Error merging override") else ""
        return f"{override}: {detail}" if override and detail else f"{head}: {detail}" if detail else head
    return None
