"""Preprocessing accuracy against the synthetic ground truth, and its speed, on two cohorts.

For each subject (first session) of each cohort, runs extraction (N4 and the
native brain mask), the three registration variants, skull stripping and
cropping exactly as the workflow does, then prints per cohort, variant and
modality: Dice of the native brain mask with the true one (the same mask for
every variant, by construction), Dice of the true mask carried by the
estimated transform with the variant's mask, mean Dice of the atlas regions,
displacement error against the true transform (mean and 95th percentile, mm),
and the seconds of each step per session.

Cohorts: ``default`` (config.yaml's generator: pose, head, nonlinear anatomy
warp) and ``affine`` (the anatomy warp and the disease's local volume loss
switched off, another seed: the truth is an affine pose only, so every mm SyN
adds is invented). The goals (issue 18): native mask Dice >= 0.97 on every
scan; affine truth: SyN's mean displacement at most 0.3 mm above linear's and
its 95th percentile <= 1.5 mm; warped truth: SyN < linear < none.

    python benchmarks/preprocessing.py                      # 3 subjects per cohort, config.yaml
    python benchmarks/preprocessing.py --subjects 2 --resolution 1.0
    python benchmarks/preprocessing.py --method registration --cohorts affine
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from braindl import accuracy, registration, synthetic

REPO = Path(__file__).resolve().parents[1]
MODS = ("T1w", "pet")
COHORTS = {
    "default": {},
    "affine": {"warp_mm": 0.0, "volume_loss": 0.0, "seed": 7},
}


def make_cohort(root: Path, settings: dict, n: int) -> list[str]:
    groups = {"CN": (n + 1) // 2, "MCI": 0, "AD": n // 2, "DLB": 0, "FTLD": 0}
    s = {**settings, "groups": groups, "sessions": [1, 1]}
    synthetic.run_cohort(s, root / "bids", root / "truth", threads=2, log=lambda msg: None)
    return [p[4:] for p in synthetic.cohort_table(s)["participant_id"]]


def run_cohort(name: str, cfg: dict, root: Path, n: int, threads: int) -> tuple[list[dict], list[dict]]:
    t = time.perf_counter()
    subs = make_cohort(root, {**cfg["synthetic"], **COHORTS[name]}, n)
    print(f"{name}: generated {len(subs)} subjects in {time.perf_counter() - t:.1f} s", flush=True)
    rows, times = [], []
    for sub in subs:
        scans = {m: str(synthetic.raw_paths(root / "bids", sub, "01")[m]) for m in MODS}
        ext, paths, _, seconds = accuracy.preprocess_session(cfg, scans, root / "out", sub, "01", threads)
        t1 = json.loads(Path(ext["T1w_json"]).read_text())
        pet = json.loads(Path(ext["pet_json"]).read_text())
        times.append(dict(cohort=name, participant=sub, n4=t1["SecondsN4"], t1_mask=t1["SecondsExtraction"],
                          pet_mask=pet["SecondsExtraction"], **seconds))
        for v in registration.VARIANTS:
            for m in MODS:
                r = accuracy.evaluate(paths[v][f"{m}_json"], paths[v][f"{m}_mask"], root / "truth", sub, "01",
                                      ext[f"{m}_mask"])
                rows.append(dict(cohort=name, participant=sub, **r))
        print(f"{name} sub-{sub}: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()), flush=True)
    return rows, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=3, help="subjects per cohort (half CN, half AD)")
    ap.add_argument("--cohorts", nargs="+", default=list(COHORTS), choices=list(COHORTS))
    ap.add_argument("--resolution", type=float, help="working resolution (default: config.yaml)")
    ap.add_argument("--route", choices=["via_t1", "pet_template"], help="PET route (default: config.yaml)")
    ap.add_argument("--method", choices=["deepbet", "registration"], help="skullstrip.method (default: config.yaml)")
    ap.add_argument("--syn-iterations", type=int, nargs="+", help="registration.syn_iterations")
    ap.add_argument("--affine-iterations", type=int, nargs="+", help="registration.affine_iterations")
    ap.add_argument("--n4-iterations", type=int, nargs="+", help="skullstrip.n4.iterations")
    ap.add_argument("--n4-shrink", type=int, help="skullstrip.n4.shrink_factor")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    args = ap.parse_args()
    cfg = yaml.safe_load(args.configfile.read_text())
    for key, value in (("resolution_mm", args.resolution), ("pet_route", args.route),
                       ("syn_iterations", args.syn_iterations), ("affine_iterations", args.affine_iterations)):
        if value:
            cfg["registration"][key] = value
    if args.method:
        cfg["skullstrip"]["method"] = args.method
    if args.n4_iterations:
        cfg["skullstrip"]["n4"]["iterations"] = args.n4_iterations
    if args.n4_shrink:
        cfg["skullstrip"]["n4"]["shrink_factor"] = args.n4_shrink
    rows, times = [], []
    for name in args.cohorts:
        with tempfile.TemporaryDirectory() as tmp:
            r, t = run_cohort(name, cfg, Path(tmp), args.subjects, args.threads)
            rows += r
            times += t
    table = pd.DataFrame(rows)
    summary = table.groupby(["cohort", "variant", "modality"]).agg(
        native_dice_min=("native_mask_dice", "min"), mask_dice_min=("mask_dice", "min"),
        region_dice=("region_dice", "mean"), disp_mm=("displacement_mm", "mean"),
        disp_mm_max=("displacement_mm", "max"), disp_p95_mm=("displacement_p95_mm", "mean"),
        disp_p95_mm_max=("displacement_p95_mm", "max"))
    summary = summary.reindex(["none", "linear", "syn"], level=1)
    reg, n4 = cfg["registration"], cfg["skullstrip"]["n4"]
    print(f"\nresolution {reg['resolution_mm']} mm, PET route {reg['pet_route']}, skullstrip "
          f"{cfg['skullstrip']['method']}, N4 {n4['iterations']} shrink {n4['shrink_factor']}, "
          f"affine {reg['affine_iterations']}, "
          f"SyN {reg['syn_metric']} {reg['syn_iterations']}, {args.threads} threads, "
          f"{args.subjects} subjects per cohort")
    print(summary.round(3).to_string())
    print("\nper scan (T1w):")
    print(table[table.modality == "T1w"].pivot_table(index=["cohort", "participant"], columns="variant",
                                                     values="displacement_mm").round(3).to_string())
    print("\nseconds per session (both modalities):")
    print(pd.DataFrame(times).groupby("cohort").mean(numeric_only=True).round(1).to_string())


if __name__ == "__main__":
    main()
