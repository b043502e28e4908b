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
from the imports of its workflow script, so no list is kept by hand. The digests are
kept between parses per file content (:func:`use_digest_cache`, in the
checkout's ``.snakemake/braindl/code_digests.json``): a parse then reads and hashes the files
but parses none it has seen.
"""

from __future__ import annotations

import ast
import hashlib
import os
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


def _local_imports(name: str) -> tuple[str, ...]:
    path = _module_file(name)
    return () if path is None else _file_imports(path)


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


def _import_candidates(tree: ast.AST) -> tuple[list[str], list[str]]:
    """The package's modules a syntax tree imports: those it names as modules, and the names of
    ``from braindl import x`` that may be modules (decided against the files when used)."""
    named, maybe = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            named.add(node.module)
            maybe.update(f"{node.module}.{a.name}" for a in node.names)  # "from braindl import synthetic"
    return sorted(named), sorted(maybe)


def normalised_source(source: str, filename: str = "<source>") -> str:
    """The code of ``source`` without what does not run: its syntax tree, with the docstrings of the
    module, classes and functions removed, dumped without line numbers (so comments, blank lines and
    formatting are gone too)."""
    return _dump(ast.parse(source, filename=filename))


def _dump(tree: ast.AST) -> str:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


# ---- digests of source files, kept between parses ------------------------------------------------------
# Parsing and dumping the syntax trees of the package and the workflow scripts takes about a second, and
# Snakemake parses the workflow for every dry run, every cluster job and every module. The results are
# kept per file content (its SHA-256) in a JSON file (use_digest_cache): an edited file gets a new entry.
_DISK: dict | None = None
_DISK_PATH: Path | None = None
_DISK_NEW = False
_DISK_LIMIT = 2000
_USED: set = set()


def use_digest_cache(path) -> None:
    """Keep the digests of source files in ``path`` (JSON) between processes; an unreadable file is
    ignored and rewritten. Written at exit, atomically, when new files were digested."""
    global _DISK, _DISK_PATH
    import atexit
    import json

    if _DISK is not None and _DISK_PATH == Path(path):  # a module of the workflow parses it again
        return
    _DISK_PATH = Path(path)
    try:
        loaded = json.loads(_DISK_PATH.read_text())
        _DISK = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        _DISK = {}
    atexit.register(save_digest_cache)


def save_digest_cache() -> None:
    """Write the digest cache (:func:`use_digest_cache`) if files were digested since it was read."""
    global _DISK_NEW
    if _DISK is None or _DISK_PATH is None or not _DISK_NEW:
        return
    if len(_DISK) > _DISK_LIMIT:  # edits leave old entries behind: keep this process's only
        for key in set(_DISK) - _USED:
            del _DISK[key]
    from braindl.io import write_json  # atomic, with the umask's mode

    try:
        write_json(_DISK_PATH, _DISK)
        _DISK_NEW = False
    except OSError:  # a read-only checkout: digest again next time
        pass


_MEMORY: dict = {}


def _file_info(path: Path) -> dict:
    """Digest of a source file's code (:func:`normalised_source`) and its import candidates; kept in
    memory per (path, modification time, size) and on disk per content (:func:`use_digest_cache`)."""
    global _DISK_NEW
    path = Path(path)
    st = path.stat()
    stamp = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if stamp in _MEMORY:
        return _MEMORY[stamp]
    text = path.read_text()
    key = hashlib.sha256(text.encode()).hexdigest()
    _USED.add(key)
    info = _DISK.get(key) if _DISK is not None else None
    if not _valid_info(info):
        tree = ast.parse(text, filename=str(path))
        named, maybe = _import_candidates(tree)
        info = {"digest": hashlib.sha256(_dump(tree).encode()).hexdigest(), "named": named, "maybe": maybe}
        if _DISK is not None:
            _DISK[key] = info
            _DISK_NEW = True
    _MEMORY[stamp] = {**info, "key": key}
    return _MEMORY[stamp]


def _valid_info(info) -> bool:
    return (isinstance(info, dict) and isinstance(info.get("digest"), str)
            and all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                    for v in (info.get("named"), info.get("maybe"))))


def _file_imports(path: Path) -> tuple[str, ...]:
    info = _file_info(path)
    return tuple(sorted(set(info["named"]) | {m for m in info["maybe"] if _module_file(m) is not None}))


def _module_digest(name: str) -> str:
    return _file_info(_module_file(name))["digest"]


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
    return module_closure(*_file_imports(Path(script)))


def script_hash(script) -> str:
    """:func:`code_hash` of what ``script`` imports, with the script's own code: what a rule runs."""
    global _DISK_NEW
    path = Path(script)
    mods = script_modules(path)
    if not mods:
        raise ValueError(f"{path}: imports no braindl module")
    code = code_hash(*mods)
    key = f"script:{_file_info(path)['key']}:{code}"
    _USED.add(key)
    if _DISK is not None and isinstance(_DISK.get(key), str):
        return _DISK[key]
    h = hashlib.sha256(code.encode())
    h.update(normalised_source(path.read_text(), str(path)).encode())
    if _DISK is not None:
        _DISK[key] = h.hexdigest()[:16]
        _DISK_NEW = True
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

