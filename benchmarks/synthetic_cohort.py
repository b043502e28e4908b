"""Benchmark the synthetic cohort generator and print its figures.

    python benchmarks/synthetic_cohort.py [--threads 2] [--subjects N]

Runs what the workflow's `synthetic_cohort` job runs (``synthetic.run_cohort``) on
the default cohort of config.yaml, or on N subjects in its proportions: the
template head model and every diagnosis' effect maps, then every session,
``--threads`` subjects at once. Prints seconds per step and per session and the
peak memory. The job adds about 3 s of Python start-up;
`time snakemake --cores 2 check_inputs` on a clean results folder measures all
of it, with the input check.
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import yaml

from braindl import synthetic

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--subjects", type=int, help="N subjects in the default cohort's proportions")
    args = ap.parse_args()
    settings = yaml.safe_load((REPO / "config.yaml").read_text())["synthetic"]
    if args.subjects:
        total = sum(settings["groups"].values())
        settings["groups"] = {dx: max(1, round(n * args.subjects / total)) for dx, n in settings["groups"].items()}
    table = synthetic.cohort_table(settings)
    n_sessions = int(table.n_sessions.sum())
    marks = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        synthetic.run_cohort(settings, tmp / "bids", tmp / "truth", threads=args.threads,
                             log=lambda msg: marks.append(time.perf_counter()))
        end = time.perf_counter()
        size = sum(p.stat().st_size for p in tmp.rglob("*.nii.gz")) / 2**20
    t_model = marks[0] - start
    t_sessions = marks[-1] - marks[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"cohort               {len(table)} subjects, {n_sessions} sessions, {args.threads} thread(s)")
    print(f"model + effect maps  {t_model:6.1f} s ({len(synthetic.cohort_diagnoses(settings))} diagnoses)")
    print(f"sessions             {t_sessions:6.1f} s ({t_sessions / n_sessions:.2f} s per session, "
          f"{t_sessions * args.threads / n_sessions:.2f} s of thread time per session)")
    print(f"total                {end - start:6.1f} s, {size:.0f} MiB of NIfTI, peak RSS {peak:.1f} GiB")


if __name__ == "__main__":
    main()
