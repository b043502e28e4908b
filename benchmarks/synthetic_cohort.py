"""Benchmark the synthetic cohort generator and print its figures.

    python benchmarks/synthetic_cohort.py [--sessions 4] [--threads 1]

Prints seconds for the template model, one diagnosis' effect maps, and per
session (T1w + PET + ground truth), plus the extrapolated CPU time of the
default cohort of config.yaml. For the wall time of the whole workflow run
`time snakemake --cores 2 all` on a clean results folder.
"""

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from braindl import synthetic

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    settings = yaml.safe_load((REPO / "config.yaml").read_text())["synthetic"]
    t = time.perf_counter()
    model = synthetic.build_model(settings)
    t_model = time.perf_counter() - t
    t = time.perf_counter()
    weights = synthetic.disease_weights(model, settings, "AD")
    t_dx = time.perf_counter() - t
    table = synthetic.cohort_table(settings)
    ad = table[table.diagnosis == "AD"].participant_id.str[4:].tolist()
    volumes = synthetic.sampling_volumes(model, weights)  # once per subject job, as in the workflow
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ad[: args.sessions]:
            t = time.perf_counter()
            synthetic.generate_session(settings, model, weights, sub, "01", Path(tmp) / "bids",
                                       Path(tmp) / "truth", threads=args.threads, volumes=volumes)
            times.append(time.perf_counter() - t)
    per = sum(times) / len(times)
    n_sessions = int(table.n_sessions.sum())
    n_dx = table.diagnosis.nunique()
    print(f"template model       {t_model:6.1f} s (once)")
    print(f"disease effect maps  {t_dx:6.1f} s (per diagnosis, {n_dx} diagnoses)")
    print(f"one session          {per:6.1f} s (T1w + PET + ground truth, {args.threads} thread(s), "
          f"mean of {len(times)})")
    print(f"default cohort       {len(table)} subjects, {n_sessions} sessions")
    cpu = t_model + n_dx * t_dx + n_sessions * per
    print(f"cohort CPU time      {cpu:6.1f} s -> about {cpu / 2:5.1f} s wall on 2 cores "
          f"(plus ~3 s start-up per job)")


if __name__ == "__main__":
    main()
