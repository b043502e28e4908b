"""Time and memory to build the DAG (a dry run) of a large design, with no image read at parse time.

    python benchmarks/dag_scale.py                    # 1000 subjects x 3 variants x 5 folds x 10 repeats x 3 methods
    python benchmarks/dag_scale.py --subjects 200     # smaller

The design: the embedded synthetic cohort with ``--subjects`` subjects (one
session each; CN/MCI/AD/DLB/FTLD in the default proportions), registration
none/linear/SyN, 5-fold cross-validation with 10 training runs per fold for CN vs AD on T1w,
and heatmaps of 3 methods for the two registered variants (``none`` has no
common space). Prints the number of jobs, the wall time of ``snakemake -n all``
(parse + DAG) and its peak memory (max RSS of the child process).
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def design(n_subjects: int) -> dict:
    shares = {"CN": 10, "MCI": 8, "AD": 8, "DLB": 6, "FTLD": 4}
    groups = {k: n_subjects * v // sum(shares.values()) for k, v in shares.items()}
    groups["CN"] += n_subjects - sum(groups.values())
    return {
        "synthetic": {"groups": groups, "sessions": [1, 1]},
        "registration": {"variants": ["none", "linear", "syn"]},
        "splits": {"method": "kfold", "n_splits": 5, "n_repeats": 10},
        "training": {"tasks": ["CN_vs_AD"], "modalities": ["T1w"]},
        "transfer": {"tasks": [], "roc_task": None, "embedding_task": None},
        "pretraining": {"model": None},
        "heatmaps": {"tasks": ["CN_vs_AD"], "variants": ["linear", "syn"],
                     "methods": ["lrp_epsilon", "guided_backprop", "gradient_x_input"]},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "design.yaml"
        cfg.write_text(yaml.safe_dump(design(args.subjects)))
        cmd = [sys.executable, "-m", "snakemake", "all", "-n", "-q", "rules", "-s", str(REPO / "Snakefile"),
               "--directory", tmp, "--configfile", str(cfg)]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**10
    if out.returncode:
        sys.exit(f"dry run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    text = out.stdout + out.stderr
    total = re.search(r"^total\s+(\d+)$", text, re.M)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", text.split("Job stats:")[1].split("total")[0], re.M))
    print(f"{args.subjects} subjects x 3 variants x 5 folds x 10 repeats x 3 heatmap methods")
    print(f"jobs: {total.group(1) if total else '?'}  (train {counts.get('train')}, heatmap {counts.get('heatmap')}, "
          f"register_syn {counts.get('register_syn')})")
    print(f"dry run (parse + DAG): {seconds:.1f} s, peak memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
