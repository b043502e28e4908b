"""envs/*.yaml parse and pin exactly the versions pyproject.toml pins."""

import re
import tomllib

import yaml


def _pins(reqs):
    out = {}
    for r in reqs:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)==([^\s;]+)\s*", r)
        assert m, f"not an exact pin: {r!r}"
        out[m.group(1).lower()] = m.group(2)
    return out


def test_conda_env_matches_pyproject(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    py_pins = _pins(project["dependencies"])
    envs = sorted((repo / "envs").glob("*.yaml"))
    assert envs
    for env_file in envs:
        env = yaml.safe_load(env_file.read_text())
        assert env["name"] and "dependencies" in env
        deps = env["dependencies"]
        assert any(str(d).startswith("python=3.11") for d in deps if isinstance(d, str))
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        assert _pins(pip) == py_pins, env_file


def test_rules_use_an_existing_env(repo):
    for smk in (repo / "rules").glob("*.smk"):
        for ref in re.findall(r'ENV = "([^"]+)"', smk.read_text()):
            assert (repo / "rules" / ref).resolve().is_file()
