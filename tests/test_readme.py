"""The README's two opening commands stay true: CI runs the second one verbatim."""

import re


def _commands(repo):
    text = (repo / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_install_and_run_commands(repo):
    run, test = _commands(repo)[:2]
    assert "pip install" in run and "snakemake --cores" in run and run.rstrip().endswith("all")
    assert "pip install" in test and "pytest" in test


def test_ci_runs_the_readme_test_command(repo):
    test = _commands(repo)[1]
    assert test in (repo / ".ci/run").read_text()
