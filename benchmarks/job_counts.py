"""Job counts of the shipped configs: what `snakemake -n all` plans for each, per stage.

    python benchmarks/job_counts.py                          # config.yaml, configs/laptop.yaml, full protocol
    python benchmarks/job_counts.py --configs configs/x.yaml # others (each over config.yaml)

For each config (over config.yaml, as `--configfile` does) it prints the total
number of jobs of a dry run of `all` from an empty folder, the jobs that run
beside Snakemake (`localrules`: tables and figures), and the jobs per stage (the
rule's name up to its first underscore; an external dataset's rules counted as
`external`). ImageNet weights are empty files in a temporary torch hub cache (a dry
run only checks that they exist). On SLURM, grouped rules (`group:` in the rule files) go to the queue
as one job per connected chain, which the last column estimates: the jobs outside
`localrules`, with each group's jobs of one chain counted once (per session, per
dose scan, per 8 heatmap summaries: `profiles/slurm`'s `group-components`).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = (None, "configs/laptop.yaml", "configs/full_protocol.yaml")
# rules grouped per chain in the rule files (group name -> rules), and the chains packed per cluster job
SESSION = ("extract", "register_none", "register_linear", "register_syn", "strip_crop")
DOSE_SCAN = ("dose_reconstruct", "dose_patches")


def job_counts(text: str) -> Counter:
    if "Job stats:" not in text:
        return Counter()
    block = text.split("Job stats:")[1].split("total")[0]
    return Counter({m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)})


def local_rules() -> set[str]:
    names = set()
    for smk in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        for block in re.findall(r"localrules:\s*\n((?:\s+\w+,?\s*\n)+)", smk.read_text()):
            names |= set(re.findall(r"(\w+)", block))
    return names


def stage(rule: str) -> str:
    return "external" if rule.startswith("external") else rule.split("_")[0]


def cluster_jobs(counts: Counter, local: set[str]) -> int:
    """Queue submissions under profiles/slurm: one per session chain, per dose scan, per 8 heatmap summaries."""
    n = summaries = 0
    for rule, k in counts.items():
        base = re.sub(r"^external_[A-Za-z0-9]+_", "", rule)
        if rule in local or base in local or rule == "all":
            continue
        if base in SESSION or base in DOSE_SCAN:
            n += k if base in ("extract", "dose_reconstruct") else 0  # one queue job per chain
        elif base.endswith("heatmap_summary"):
            summaries += k
        else:
            n += k
    return n + -(-summaries // 8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="*", default=None, help="config files (over config.yaml); default: shipped")
    args = ap.parse_args()
    configs = args.configs if args.configs is not None else [c for c in SHIPPED if c is None or (REPO / c).exists()]
    local = local_rules()
    sys.path.insert(0, str(REPO))
    from braindl.architectures import BACKBONES

    hub = tempfile.TemporaryDirectory()
    ckpt = Path(hub.name) / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    for _, filename in BACKBONES.values():  # a dry run only checks that ImageNet weights exist
        (ckpt / filename).write_bytes(b"")
    env = {**os.environ, "TORCH_HOME": hub.name}
    print(f"{'config':32s} {'jobs':>6s} {'local':>6s} {'queue (slurm)':>14s} {'dry run s':>10s}")
    per_stage = {}
    for cfg in configs:
        with tempfile.TemporaryDirectory() as wd:
            cmd = [sys.executable, "-m", "snakemake", "all", "-n", "-s", str(REPO / "Snakefile"), "--directory", wd]
            if cfg:
                cmd += ["--configfile", str((REPO / cfg).resolve())]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=wd, env=env)
            seconds = time.perf_counter() - t0
        if out.returncode:
            print(f"{cfg or 'config.yaml'}: dry run failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        counts = job_counts(out.stdout + out.stderr)
        total = sum(counts.values())
        n_local = sum(k for r, k in counts.items() if r in local)
        print(f"{cfg or 'config.yaml':32s} {total:6d} {n_local:6d} {cluster_jobs(counts, local):14d} {seconds:10.1f}")
        agg = Counter()
        for rule, k in counts.items():
            agg[stage(rule)] += k
        per_stage[cfg or "config.yaml"] = agg
    stages = sorted({s for agg in per_stage.values() for s in agg}, key=lambda s: -max(a[s] for a in per_stage.values()))
    print("\njobs per stage")
    print(f"{'stage':14s}" + "".join(f"{c[-22:]:>24s}" for c in per_stage))
    for s in stages:
        print(f"{s:14s}" + "".join(f"{per_stage[c][s]:24d}" for c in per_stage))


if __name__ == "__main__":
    main()
