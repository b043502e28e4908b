"""code_hash follows the package's own imports, so library edits rerun the right rules."""

import shutil

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
    provenance._local_imports.cache_clear()
    before = {m: provenance.code_hash(m) for m in ("synthetic", "inputs")}
    with open(pkg / "templates.py", "a") as fh:
        fh.write("\n# a change\n")
    after = {m: provenance.code_hash(m) for m in ("synthetic", "inputs")}
    assert after["synthetic"] != before["synthetic"]
    assert after["inputs"] == before["inputs"]
    provenance._local_imports.cache_clear()


def test_canonical_sorts_keys_recursively_and_keeps_lists():
    a = provenance.canonical({"b": {"shape": [3, 2], "res": 2.0}, "a": [{"y": 1, "x": 2}]})
    b = provenance.canonical({"a": [{"x": 2, "y": 1}], "b": {"res": 2.0, "shape": [3, 2]}})
    assert repr(a) == repr(b) == "{'a': [{'x': 2, 'y': 1}], 'b': {'res': 2.0, 'shape': [3, 2]}}"
