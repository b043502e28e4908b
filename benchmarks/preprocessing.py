"""Preprocessing accuracy against the synthetic ground truth, and its speed.

For each subject (first session), runs the three registration variants, skull
stripping and cropping exactly as the workflow does, then prints per variant and
modality: Dice of the skull-strip mask with the true brain mask, mean Dice of the
atlas regions, displacement error against the true transform (mean and 95th
percentile, mm), seconds per image (registration) and the wall time of all
three variants of one session (both modalities, stripping and cropping included).

    python benchmarks/preprocessing.py                      # 4 new subjects, config.yaml
    python benchmarks/preprocessing.py --subjects 2 --resolution 1.0
    python benchmarks/preprocessing.py --bids results/synthetic/bids --truth results/synthetic/groundtruth
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from braindl import accuracy, registration, synthetic

REPO = Path(__file__).resolve().parents[1]
MODS = ("T1w", "pet")


def make_cohort(root: Path, settings: dict, n: int) -> list[str]:
    groups = {"CN": (n + 1) // 2, "MCI": 0, "AD": n // 2, "DLB": 0, "FTLD": 0}
    s = {**settings, "groups": groups, "sessions": [1, 1]}
    synthetic.run_cohort(s, root / "bids", root / "truth", threads=2, log=lambda msg: None)
    return [p[4:] for p in synthetic.cohort_table(s)["participant_id"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--bids", type=Path, help="existing synthetic BIDS dataset (default: generate one)")
    ap.add_argument("--truth", type=Path, help="its ground-truth folder")
    ap.add_argument("--resolution", type=float, help="working resolution (default: config.yaml)")
    ap.add_argument("--route", choices=["via_t1", "pet_template"], help="PET route (default: config.yaml)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    args = ap.parse_args()
    cfg = yaml.safe_load(args.configfile.read_text())
    if args.resolution:
        cfg["registration"]["resolution_mm"] = args.resolution
    if args.route:
        cfg["registration"]["pet_route"] = args.route
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.bids:
            bids, truth = args.bids, args.truth
            subs = sorted(p.name[4:] for p in bids.glob("sub-*"))[: args.subjects]
        else:
            t = time.perf_counter()
            subs = make_cohort(tmp, cfg["synthetic"], args.subjects)
            bids, truth = tmp / "bids", tmp / "truth"
            print(f"generated {len(subs)} subjects in {time.perf_counter() - t:.1f} s")
        rows, walls = [], []
        for sub in subs:
            scans = {m: str(synthetic.raw_paths(bids, sub, "01")[m]) for m in MODS}
            paths, masks, wall = accuracy.preprocess_session(cfg, scans, tmp / "out", sub, "01", args.threads)
            walls.append(wall)
            for v in registration.VARIANTS:
                for m in MODS:
                    rows.append(accuracy.evaluate(paths[v][f"{m}_json"], masks[v][f"{m}_mask"], truth, sub, "01"))
            print(f"sub-{sub}: all three variants, both modalities, stripped and cropped in {wall:.1f} s", flush=True)
    table = pd.DataFrame(rows)
    summary = table.groupby(["variant", "modality"]).agg(
        mask_dice=("mask_dice", "mean"), mask_dice_min=("mask_dice", "min"), region_dice=("region_dice", "mean"),
        displacement_mm=("displacement_mm", "mean"), displacement_p95_mm=("displacement_p95_mm", "mean"),
        seconds_per_image=("registration_seconds", "mean"))
    summary = summary.reindex(["none", "linear", "syn"], level=0)
    reg = cfg["registration"]
    print(f"\nresolution {reg['resolution_mm']} mm, PET route {reg['pet_route']}, {args.threads} ANTs threads, "
          f"{len(subs)} subjects")
    print(summary.round(3).to_string())
    print(f"\nwall time per session, all three variants (2 modalities): mean {sum(walls) / len(walls):.1f} s, "
          f"max {max(walls):.1f} s")


if __name__ == "__main__":
    main()
