"""Time and memory to build the DAG (a dry run) of a large design, with no image read at parse time.

    python benchmarks/dag_scale.py                    # 1000 subjects x 3 variants x 5 folds x 10 repeats x 3 methods
    python benchmarks/dag_scale.py --subjects 200     # smaller
    python benchmarks/dag_scale.py --bids             # the same design on a BIDS dataset in Clinica's ADNI layout

The design: the embedded synthetic cohort with ``--subjects`` subjects (one
session each; CN/MCI/AD/DLB/FTLD in the default proportions), registration
none/linear/SyN, 5-fold cross-validation with 10 training runs per fold for CN vs AD on T1w,
and heatmaps of 3 methods for the two registered variants (``none`` has no
common space). Prints the number of jobs, the wall time of ``snakemake -n all``
(parse + DAG) and its peak memory (max RSS of the child process).

With ``--bids`` the subjects are a BIDS dataset of empty files in Clinica's ADNI
layout (3 sessions each, two T1w runs and FDG + AV45 PET at M000, T1w only
after; sessions.tsv), selected with ``dataset.filters.pet.trc: 18FFDG``. It
prints the parse time of the first run (pybids indexes the dataset), of a
second one (the index is read back, as in every cluster job) and the full dry run.
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
sys.path.insert(0, str(REPO))
from braindl import derivatives  # noqa: E402


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


def adni_layout(root: Path, n_subjects: int) -> None:
    """Empty image files in Clinica's ADNI layout (the parse reads no image)."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "dag_scale", "BIDSVersion": "1.8.0"}')
    rows = ["participant_id\tsex"]
    for i in range(n_subjects):
        sub = f"sub-ADNI{i:04d}"
        rows.append(f"{sub}\t{'FM'[i % 2]}")
        ses_rows = ["session_id\tdiagnosis\tage"]
        for ses in ("M000", "M012", "M024"):
            ses_rows.append(f"ses-{ses}\t{('CN', 'AD')[i % 2]}\t70")
            anat = root / sub / f"ses-{ses}" / "anat"
            anat.mkdir(parents=True)
            for run in (("01", "02") if ses == "M000" else ("01",)):
                (anat / f"{sub}_ses-{ses}_run-{run}_T1w.nii.gz").touch()
            if ses == "M000":
                pet = root / sub / f"ses-{ses}" / "pet"
                pet.mkdir()
                for trc in ("18FFDG", "18FAV45"):
                    (pet / f"{sub}_ses-{ses}_trc-{trc}_rec-coregiso_pet.nii.gz").touch()
        (root / sub / f"{sub}_sessions.tsv").write_text("\n".join(ses_rows) + "\n")
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")


def _dry_run(tmp, cfg, target):
    cmd = [sys.executable, "-m", "snakemake", target, "-n", "-q", "rules", "-s", str(REPO / "Snakefile"),
           "--directory", tmp, "--configfile", str(cfg)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode:
        sys.exit(f"dry run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out, seconds


def main_bids(n_subjects: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        adni_layout(Path(tmp) / "bids", n_subjects)
        cfg = Path(tmp) / "design.yaml"
        over = design(n_subjects)
        del over["synthetic"]
        over["dataset"] = {"bids_dir": str(Path(tmp) / "bids"), "diagnoses": ["CN", "MCI", "AD"],
                           "out_of_distribution": [], "filters": {"pet": {"trc": "18FFDG"}}}
        cfg.write_text(yaml.safe_dump(over))
        manifest = derivatives.manifest("results")
        _, first = _dry_run(tmp, cfg, manifest)
        _, second = _dry_run(tmp, cfg, manifest)
        out, full = _dry_run(tmp, cfg, "all")
    text = out.stdout + out.stderr
    total = re.search(r"^total\s+(\d+)$", text, re.M)
    print(f"BIDS (ADNI layout): {n_subjects} participants x 3 sessions, {5 * n_subjects} image files")
    print(f"parse, first run (pybids indexes the dataset): {first:.1f} s")
    print(f"parse, later runs and cluster jobs (index read back): {second:.1f} s")
    print(f"dry run of all: {total.group(1) if total else '?'} jobs in {full:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--bids", action="store_true", help="a BIDS dataset in Clinica's ADNI layout")
    args = ap.parse_args()
    if args.bids:
        return main_bids(args.subjects)
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
