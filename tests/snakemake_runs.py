"""Running the real Snakefile from tests: a command line and the job counts of a dry run."""

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import yaml

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


def dry_run_changed(repo, workdir, base_config, name, change):
    """Job counts of a dry run of ``all`` in ``workdir`` with ``base_config`` (a YAML file there) changed
    section by section by ``change`` (written as ``<name>.yaml``): what a setting would rerun."""
    over = yaml.safe_load((workdir / base_config).read_text())
    for section, values in change.items():
        over.setdefault(section, {}).update(values)
    (workdir / f"{name}.yaml").write_text(yaml.safe_dump(over))
    out = smk(repo, workdir, "-n", "--configfile", f"{name}.yaml", "all")
    return job_counts(out.stdout + out.stderr)


def dry_runs_changed(repo, workdir, base_config, changes, workers=2):
    """:func:`dry_run_changed` for each ``{name: change}``, ``workers`` dry runs at a time (a dry run is one
    busy Python process: two use both cores): ``{name: job counts}``."""
    with ThreadPoolExecutor(workers) as pool:
        futures = {name: pool.submit(dry_run_changed, repo, workdir, base_config, name, change)
                   for name, change in changes.items()}
        try:
            return {name: f.result() for name, f in futures.items()}
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a failed dry run shows at once, not after the queued ones
            raise
