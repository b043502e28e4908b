"""Make library code changes visible to Snakemake.

Snakemake's code trigger sees a rule's own text and its script, not the modules
the script imports. Each rule therefore carries ``params: code=code_hash(...)``:
a digest of the source of the named library modules and, transitively, of every
``braindl`` module they import. Editing any of them changes the parameter, and
Snakemake's params trigger reruns exactly the rules that use that code.
Only source files are read (nothing is imported), so this is cheap at parse time.

The digest is over each module's syntax tree with docstrings removed
(:func:`normalised_source`): comments, docstrings and formatting change nothing,
so editing them reruns no job. :func:`script_hash` derives the modules of a rule
from the imports of its workflow script, so no list is kept by hand.
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
    return tuple(sorted(_imports_of(ast.parse(path.read_text(), filename=str(path)))))


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


def _imports_of(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            for a in node.names:  # "from braindl import synthetic"
                if _module_file(f"{node.module}.{a.name}") is not None:
                    found.add(f"{node.module}.{a.name}")
    return found


def normalised_source(source: str, filename: str = "<source>") -> str:
    """The code of ``source`` without what does not run: its syntax tree, with the docstrings of the
    module, classes and functions removed, dumped without line numbers (so comments, blank lines and
    formatting are gone too)."""
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


@lru_cache(maxsize=None)
def _module_digest(name: str) -> str:
    path = _module_file(name)
    return hashlib.sha256(normalised_source(path.read_text(), str(path)).encode()).hexdigest()


def code_hash(*names: str) -> str:
    """Short digest of the code of ``names`` and their package imports (:func:`normalised_source`)."""
    h = hashlib.sha256()
    mods = module_closure(*names)
    if not mods:
        raise ValueError(f"no braindl module among {names}")
    for mod in mods:
        h.update(mod.encode())
        h.update(_module_digest(mod).encode())
    return h.hexdigest()[:16]


def script_modules(script) -> list[str]:
    """The ``braindl`` modules a workflow script imports, and theirs, transitively."""
    path = Path(script)
    return module_closure(*sorted(_imports_of(ast.parse(path.read_text(), filename=str(path)))))


def script_hash(script) -> str:
    """:func:`code_hash` of what ``script`` imports, with the script's own code: what a rule runs."""
    path = Path(script)
    mods = script_modules(path)
    if not mods:
        raise ValueError(f"{path}: imports no braindl module")
    h = hashlib.sha256(code_hash(*mods).encode())
    h.update(normalised_source(path.read_text(), str(path)).encode())
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

