"""Running the real Snakefile from tests: a command line and the job counts of a dry run."""

import re
import subprocess
import sys

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TARGET_RULES = ("all", "preprocessing")


def smk(repo, workdir, *args, check=True, env=None):
    # targets first: --configfile takes several values and would swallow them
    targets = [a for a in args if a in TARGET_RULES or a.startswith("results/")]
    options = [a for a in args if a not in targets]
    cmd = [*SNAKEMAKE, *targets, "-s", str(repo / "Snakefile"), "--directory", str(workdir), *options]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env)
    if check and out.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def job_counts(text):
    """Job stats table of a Snakemake dry run as {rule: count} ({} when nothing is to be done)."""
    if "Job stats:" not in text:
        assert "Nothing to be done" in text, text
        return {}
    block = text.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}
