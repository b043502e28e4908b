"""Running the real Snakefile from tests: a command line and the job counts of a dry run."""

import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import yaml

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TARGET_RULES = ("all", "preprocessing")
_FORKSERVER = None


def _forkserver():
    """A fork server that has imported Snakemake (tests/snakemake_preload.py): a dry run forked from it skips
    those imports. It is a clean single-threaded process, unlike the test process it serves."""
    global _FORKSERVER
    if _FORKSERVER is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["snakemake_preload"])
        _FORKSERVER = ctx
    return _FORKSERVER


def _snakemake_main(argv, cwd, out_path, err_path):
    """``python -m snakemake <argv>`` in a process forked from the fork server, its output into two files."""
    os.chdir(cwd)
    for fd, path in ((1, out_path), (2, err_path)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
    sys.argv = ["snakemake", *argv]
    code = 1
    try:
        from snakemake.cli import main

        main(argv)
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _dry_run_forked(cmd, workdir):
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        proc = _forkserver().Process(target=_snakemake_main, args=(cmd[len(SNAKEMAKE):], str(workdir), out, err))
        proc.start()
        proc.join()
        with open(out) as o, open(err) as e:
            return subprocess.CompletedProcess(cmd, proc.exitcode, o.read(), e.read())


def smk(repo, workdir, *args, check=True, env=None):
    """``python -m snakemake`` with the repository's Snakefile in ``workdir``: a CompletedProcess. A dry run
    (``-n``) in the test's own environment is forked from a process that has Snakemake loaded; any other
    run is a new process, as a user's."""
    # targets first: --configfile takes several values and would swallow them
    targets = [a for a in args if a in TARGET_RULES or a.startswith("results/")]
    options = [a for a in args if a not in targets]
    cmd = [*SNAKEMAKE, *targets, "-s", str(repo / "Snakefile"), "--directory", str(workdir), *options]
    if "-n" in options and env is None:
        out = _dry_run_forked(cmd, workdir)
    else:
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
