"""code_hash follows the package's own imports, so library edits rerun the right rules."""

import shutil

import pytest

from braindl import provenance


def test_closure_follows_imports():
    mods = provenance.module_closure("synthetic")
    assert {"braindl.synthetic", "braindl.templates", "braindl.io"} <= set(mods)
    assert "braindl.inputs" not in mods
    assert "braindl.io" in provenance.module_closure("inputs")


def test_hash_changes_only_for_dependent_modules(tmp_path, monkeypatch):
    pkg = tmp_path / "braindl"
    shutil.copytree(provenance._ROOT, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "_ROOT", pkg)
    before = {m: provenance.code_hash(m) for m in ("synthetic", "inputs")}
    with open(pkg / "templates.py", "a") as fh:
        fh.write("\n_A_CHANGE = 1\n")
    after = {m: provenance.code_hash(m) for m in ("synthetic", "inputs")}
    assert after["synthetic"] != before["synthetic"]
    assert after["inputs"] == before["inputs"]


def test_comments_docstrings_and_formatting_do_not_count():
    code = 'def f(x):\n    """Doubles."""\n    return 2 * x  # twice\n'
    same = '"""A module."""\n\n\ndef f(x):\n    """Doubles x, documented anew."""\n\n    return 2*x\n'
    assert provenance.normalised_source(code) == provenance.normalised_source(same)
    assert provenance.normalised_source(code) != provenance.normalised_source(code.replace("2 * x", "3 * x"))
    # a string that is not a docstring is code
    assert provenance.normalised_source('x = "a"\n') != provenance.normalised_source('x = "b"\n')
    # a function whose body is only its docstring still parses to something
    assert "Pass" in provenance.normalised_source('def g():\n    """Nothing."""\n')


def test_script_modules_come_from_its_imports(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("from braindl.atlas import run_groundtruth\nfrom braindl.logs import to_log\n")
    mods = provenance.script_modules(script)
    assert {"braindl.atlas", "braindl.logs", "braindl.io"} <= set(mods) and "braindl.dose" not in mods
    before = provenance.script_hash(script)
    script.write_text("# run it\n" + script.read_text())
    assert provenance.script_hash(script) == before
    script.write_text(script.read_text() + "from braindl.dose import run_scores\n")
    assert provenance.script_hash(script) != before
    (tmp_path / "none.py").write_text("import os\n")
    with pytest.raises(ValueError, match="imports no braindl module"):
        provenance.script_hash(tmp_path / "none.py")


def test_canonical_sorts_keys_recursively_and_keeps_lists():
    a = provenance.canonical({"b": {"shape": [3, 2], "res": 2.0}, "a": [{"y": 1, "x": 2}]})
    b = provenance.canonical({"a": [{"x": 2, "y": 1}], "b": {"res": 2.0, "shape": [3, 2]}})
    assert repr(a) == repr(b) == "{'a': [{'x': 2, 'y': 1}], 'b': {'res': 2.0, 'shape': [3, 2]}}"


# the jobs that run a network; every other job (tables, figures, preprocessing) starts without torch
TORCH_SCRIPTS = {"train.py", "heatmap.py", "dose_train.py", "dose_reconstruct.py",
                 "transfer_embedding.py"}


def test_table_and_figure_jobs_import_no_torch():
    """torch and captum take seconds to import; the scripts of the other jobs import library modules that do
    not import them (checked with both blocked), so a figure job starts in a fraction of a second."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    scripts = sorted((Path(__file__).resolve().parents[1] / "workflow_scripts").glob("*.py"))
    assert TORCH_SCRIPTS <= {p.name for p in scripts}
    mods = sorted({n.module for p in scripts if p.name not in TORCH_SCRIPTS
                   for n in ast.walk(ast.parse(p.read_text()))
                   if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("braindl")})
    assert {"braindl.quality", "braindl.transfer", "braindl.atlas"} <= set(mods)
    mods.append("braindl.groupmaps")  # the heatmap summary and figure jobs call it through braindl.atlas
    code = "import sys\nsys.modules['torch'] = sys.modules['captum'] = None\n" + "".join(f"import {m}\n" for m in mods)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_digests_kept_between_processes_give_the_same_hashes(tmp_path, monkeypatch):
    """The digest cache (one JSON file, per file content) changes no hash; an edited file is digested
    anew, and a cache file that cannot be read is ignored and rewritten."""
    import json
    from pathlib import Path

    scripts = sorted((Path(provenance._ROOT).parent / "workflow_scripts").glob("*.py"))
    plain = {p.name: provenance.script_hash(p) for p in scripts}
    cache = tmp_path / "cache" / "digests.json"
    monkeypatch.setattr(provenance, "_MEMORY", {})
    monkeypatch.setattr(provenance, "_DISK", None)
    provenance.use_digest_cache(cache)
    assert {p.name: provenance.script_hash(p) for p in scripts} == plain
    provenance.save_digest_cache()
    kept = json.loads(cache.read_text())
    assert len([k for k in kept if k.startswith("script:")]) == len(scripts)
    # a new process: memory empty, the digests come from the file
    monkeypatch.setattr(provenance, "_MEMORY", {})
    monkeypatch.setattr(provenance, "_DISK", None)
    provenance.use_digest_cache(cache)
    monkeypatch.setattr(provenance, "_dump", lambda tree: pytest.fail("digested again"))
    assert {p.name: provenance.script_hash(p) for p in scripts} == plain
    monkeypatch.undo()
    # an edited script is digested anew, through the cache
    script = tmp_path / "job.py"
    script.write_text("from braindl.logs import to_log\n")
    monkeypatch.setattr(provenance, "_MEMORY", {})
    monkeypatch.setattr(provenance, "_DISK", None)
    provenance.use_digest_cache(cache)
    first = provenance.script_hash(script)
    script.write_text("from braindl.logs import to_log\nx = 1\n")
    assert provenance.script_hash(script) != first
    cache.write_text("{not json")
    provenance._DISK = None
    provenance.use_digest_cache(cache)
    assert {p.name: provenance.script_hash(p) for p in scripts} == plain
    provenance.save_digest_cache()
    assert isinstance(json.loads(cache.read_text()), dict)
    monkeypatch.setattr(provenance, "_DISK", None)
