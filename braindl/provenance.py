"""Make library code changes visible to Snakemake.

Snakemake's code trigger sees a rule's own text and its script, not the modules
the script imports. Each rule therefore carries ``params: code=code_hash(...)``:
a digest of the source of the named library modules and, transitively, of every
``braindl`` module they import. Editing any of them changes the parameter, and
Snakemake's params trigger reruns exactly the rules that use that code.
Only source files are read (nothing is imported), so this is cheap at parse time.
"""

from __future__ import annotations

import ast
import hashlib
import os
from functools import lru_cache
from pathlib import Path

PACKAGE = "braindl"
_ROOT = Path(__file__).resolve().parent


def _module_file(name: str) -> Path | None:
    rel = name.split(".")[1:]
    base = _ROOT.joinpath(*rel) if rel else _ROOT
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


@lru_cache(maxsize=None)
def _local_imports(name: str) -> tuple[str, ...]:
    path = _module_file(name)
    if path is None:
        return ()
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            for a in node.names:  # "from braindl import synthetic"
                if _module_file(f"{node.module}.{a.name}") is not None:
                    found.add(f"{node.module}.{a.name}")
    return tuple(sorted(found))


def module_closure(*names: str) -> list[str]:
    """The named ``braindl`` modules and every package module they import, transitively."""
    seen: set[str] = set()
    stack = [n if n.startswith(PACKAGE) else f"{PACKAGE}.{n}" for n in names]
    while stack:
        mod = stack.pop()
        if mod in seen or _module_file(mod) is None:
            continue
        seen.add(mod)
        stack.extend(_local_imports(mod))
    return sorted(seen)


def code_hash(*names: str) -> str:
    """Short digest of the source of ``names`` and their package imports."""
    h = hashlib.sha256()
    mods = module_closure(*names)
    if not mods:
        raise ValueError(f"no braindl module among {names}")
    for mod in mods:
        h.update(mod.encode())
        h.update(_module_file(mod).read_bytes())
    return h.hexdigest()[:16]


def export_library_path(basedir: str) -> None:
    """Put ``basedir`` (the checkout holding ``braindl``) on the PYTHONPATH of jobs.

    Jobs then import this checkout's library also in conda environments where it
    is not installed, and on cluster nodes (SLURM exports the environment).
    """
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if basedir not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([basedir, *parts])


def canonical(settings):
    """``settings`` with every mapping's keys sorted, recursively.

    Snakemake compares a rule's params as written, so the same settings with
    keys in another order (a config file rewritten by a tool, an override file)
    would look changed and rerun the rule. Use it for settings whose key order
    carries no meaning.
    """
    if isinstance(settings, dict):
        return {k: canonical(settings[k]) for k in sorted(settings)}
    if isinstance(settings, (list, tuple)):
        return [canonical(v) for v in settings]
    return settings

