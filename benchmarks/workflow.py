"""Wall time of the whole workflow, cold and as a no-op rerun, and where the time goes.

    python benchmarks/workflow.py                              # the default config, 2 cores, in a temporary folder
    python benchmarks/workflow.py --configfile configs/x.yaml  # another config (over config.yaml)
    python benchmarks/workflow.py --cores 8 --keep /scratch/run
    python benchmarks/workflow.py --analyse <run folder>        # only the tables, from a finished run

Runs ``snakemake --cores N all`` from an empty results folder, then the same
command again (nothing to do), and prints: wall time of both, Snakemake's own
process's CPU time (all its threads; not its jobs'), the number of jobs, and the
share of core time spent outside the library functions (process start, imports,
Snakemake's own work, idle cores): ``1 - sum(library seconds x threads) /
(wall x cores)``. A job's library seconds are the time inside its script's
``braindl.logs.to_log`` block, which every workflow script wraps around its one
library call; they count once per core the job holds (its ``threads``, which
Snakemake reserves for the whole job, library call and overhead alike). The
share without that weighting (every job as one core) is printed beside it. The
job's wall time and threads come from Snakemake's log (1 s resolution).
Then one line per rule: jobs, threads, summed wall and library seconds, and the
mean overhead per job (wall minus library).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from braindl.logs import LIBRARY_SECONDS  # noqa: E402

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def parse_jobs(snakemake_log: Path) -> list[dict]:
    """Jobs of one Snakemake log: rule, local, start, end (datetimes) and log file."""
    jobs, stamp, current = {}, None, None
    for line in snakemake_log.read_text().splitlines():
        m = _STAMP.match(line)
        if m:
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            current = None
            continue
        m = re.match(r"^(local)?rule (\w+):$", line)
        if m:
            current = {"rule": m.group(2), "local": bool(m.group(1)), "start": stamp, "log": None, "threads": 1}
            continue
        if current is not None:
            m = re.match(r"^\s+jobid: (\d+)$", line)
            if m:
                jobs[int(m.group(1))] = current
            m = re.match(r"^\s+threads: (\d+)$", line)
            if m:
                current["threads"] = int(m.group(1))
            m = re.match(r"^\s+log: (.+)$", line)
            if m:
                current["log"] = m.group(1).split(", ")[0]
        m = re.match(r"^Finished jobid: (\d+)", line)
        if m and int(m.group(1)) in jobs:
            jobs[int(m.group(1))]["end"] = stamp
    return [j for j in jobs.values() if "end" in j]


def library_seconds(log_file: Path) -> float | None:
    if not log_file.is_file():
        return None
    hits = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.startswith(LIBRARY_SECONDS)]
    return float(hits[-1].split(":")[1]) if hits else None


def analyse(run_dir: Path, wall: float | None, cores: int) -> None:
    logs = sorted((run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit(f"{run_dir}: no Snakemake log")
    jobs = [j for log in logs for j in parse_jobs(log)]
    if wall is None:
        wall = max((j["end"] - min(x["start"] for x in jobs)).total_seconds() for j in jobs)
    per_rule = defaultdict(lambda: {"jobs": 0, "wall": 0.0, "library": 0.0, "core": 0.0, "timed": 0, "threads": set()})
    for j in jobs:
        r = per_rule[j["rule"]]
        r["jobs"] += 1
        r["threads"].add(j["threads"])
        r["wall"] += (j["end"] - j["start"]).total_seconds()
        lib = library_seconds(run_dir / j["log"]) if j["log"] else None
        if lib is not None:
            r["library"] += lib
            r["core"] += lib * j["threads"]
            r["timed"] += 1
    total_lib = sum(r["library"] for r in per_rule.values())
    total_core = sum(r["core"] for r in per_rule.values())
    print(f"jobs {len(jobs)}; wall {wall:.0f} s on {cores} cores; library {total_lib:.0f} s, "
          f"{total_core:.0f} core-s with the jobs' threads; outside the library "
          f"{100 * (1 - total_core / (wall * cores)):.1f} % of core time "
          f"({100 * (1 - total_lib / (wall * cores)):.1f} % counting every job as one core)")
    print(f"{'rule':28s} {'jobs':>5s} {'threads':>7s} {'wall s':>8s} {'library s':>10s} {'overhead s/job':>15s}")
    for name, r in sorted(per_rule.items(), key=lambda kv: -kv[1]["wall"]):
        over = (r["wall"] - r["library"]) / r["jobs"] if r["timed"] == r["jobs"] else float("nan")
        threads = "/".join(str(t) for t in sorted(r["threads"]))
        print(f"{name:28s} {r['jobs']:5d} {threads:>7s} {r['wall']:8.0f} {r['library']:10.1f} {over:15.1f}")


# ``python -m snakemake`` that writes its own process's CPU seconds (all its threads, not its jobs) at exit
_OWN_CPU = """import atexit, resource, sys
path = sys.argv.pop(1)
def own():
    r = resource.getrusage(resource.RUSAGE_SELF)
    with open(path, "w") as f:
        f.write(str(r.ru_utime + r.ru_stime))
atexit.register(own)
from snakemake.cli import main
main(sys.argv[1:])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--configfile", default=None)
    ap.add_argument("--keep", default=None, help="run in this folder (kept) instead of a temporary one")
    ap.add_argument("--analyse", default=None, help="only print the tables of a finished run folder")
    args = ap.parse_args()
    if args.analyse:
        analyse(Path(args.analyse), None, args.cores)
        return
    run_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="braindl_workflow_"))
    run_dir.mkdir(parents=True, exist_ok=True)
    own_cpu = run_dir / ".snakemake_own_cpu"
    cmd = [sys.executable, "-c", _OWN_CPU, str(own_cpu), "all", "-s", str(REPO / "Snakefile"), "--directory",
           str(run_dir), "--cores", str(args.cores)]
    if args.configfile:
        cmd += ["--configfile", str(Path(args.configfile).resolve())]
    walls = []
    for label in ("cold", "no-op rerun"):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if out.returncode:
            print(out.stdout[-3000:], out.stderr[-3000:])
            raise SystemExit(f"{label} run failed")
        print(f"{label}: {walls[-1]:.0f} s; Snakemake's own process {float(own_cpu.read_text()):.1f} CPU s",
              flush=True)
    analyse(run_dir, walls[0], args.cores)
    print(f"run folder: {run_dir}")


if __name__ == "__main__":
    main()
