"""What the thesis' studies 5 (PIF) and 2 (AD to MS) cost with a config's settings.

Trains each of the studies' networks for a few epochs through :func:`braindl.training.train_run`
(the workflow's own path) on a pack of the size the config's synthetic cohort gives (CN and AD
sessions, the crop box of the study's modality; random volumes: the cost does not depend on
the content), prints the seconds per epoch, and projects each study's training time on this
machine: every planned run at its ``max_epochs`` (early stopping only shortens it), plus
``--overhead`` seconds of process start per job.

    python benchmarks/studies.py                    # config.yaml's sizes, the studies switched on
    python benchmarks/studies.py --configfile configs/full_protocol.yaml --epochs 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braindl import msstudy, pifstudy, splits, synthetic, training  # noqa: E402
from braindl.io import write_tsv  # noqa: E402


def merged_config(files) -> dict:
    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config.yaml").read_text())

    def merge(a, b):
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict):
                merge(a[k], v)
            else:
                a[k] = v

    for f in files:
        merge(cfg, yaml.safe_load(Path(f).read_text()) or {})
    return cfg


def toy_pack(folder: Path, n: int, shape, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = [dict(index=i, participant_id=f"sub-{i:03d}", session_id="01", diagnosis="CN" if i % 2 else "AD",
                 age=70 + i % 10, sex="MF"[i // 2 % 2], mmse=28, qc_pass=True, qc_reasons="") for i in range(n)]
    np.save(folder / "pack.npy", rng.random((n, *shape), dtype=np.float32).astype(np.float16))
    write_tsv(folder / "index.tsv", pd.DataFrame(rows))
    subjects = splits.subject_table(pd.DataFrame(rows), "CN_vs_AD", 5)
    sets = splits.make_splits(subjects, dict(method="repeated_holdout", n_splits=1, test_fraction=0.2,
                                             validation_fraction=0.2, age_bin_years=5, balance_sex=False, seed=0))[0]
    write_tsv(folder / "split.tsv", splits.session_rows(subjects, sets))


def seconds_per_epoch(folder: Path, settings: dict, epochs: int) -> float:
    s = {**settings, "max_epochs": epochs + 1, "early_stopping_patience": epochs + 2}
    out = {k: folder / f"{s['model']}_{k}.{e}" for k, e in (("model", "pt"), ("history", "tsv"), ("predictions", "tsv"),
                                                            ("summary", "json"))}
    summary = training.train_run(folder / "pack.npy", folder / "index.tsv", folder / "split.tsv", "CN_vs_AD", s, 1, 1,
                                 out, folder / "state", log=lambda m: None, threads=1)
    hist = pd.read_csv(out["history"], sep="\t")
    return float(hist["seconds"].iloc[1:].mean()), summary["n_train"]  # the first epoch warms up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", nargs="*", default=[])
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per network (after one warm-up)")
    ap.add_argument("--overhead", type=float, default=5.0, help="seconds of process start per training job")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    cfg = merged_config(args.configfile)
    pif = {**cfg["pif_study"], "tasks": cfg["pif_study"]["tasks"] or ["CN_vs_AD", "sex"]}
    mss = cfg["ms_study"]
    cohort = synthetic.cohort_table(cfg["synthetic"])
    n = int(cohort[cohort.diagnosis.isin(["CN", "AD"])]["n_sessions"].sum())
    shape = cfg["crop"]["box"][cfg["crop"]["preset"][pif["modality"]]]["shape"]
    n_splits = cfg["splits"]["n_splits"]
    print(f"pack: {n} CN and AD sessions of {tuple(shape)} (config's synthetic cohort), input_pool "
          f"{cfg['training']['input_pool']}, 1 thread per job")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        toy_pack(folder, n, shape)
        per_epoch = {}
        plan = pifstudy.study_plan(pif, n_splits)
        for family, arch in sorted({(r.family, r.architecture) for r in plan.itertuples()}):
            hp = plan[(plan.family == family) & (plan.architecture == arch)].iloc[0].to_dict()
            settings = pifstudy.run_settings(cfg["training"], pif, family, hp)
            t0 = time.perf_counter()
            per_epoch[settings["model"]], n_train = seconds_per_epoch(folder, settings, args.epochs)
            print(f"  {settings['model']:9s} {per_epoch[settings['model']]:6.2f} s/epoch on {n_train} training scans "
                  f"(batch {settings['batch_size']}; measured in {time.perf_counter() - t0:.0f} s)")
        settings = msstudy.arm_settings(cfg["training"], mss, "finetune")
        per_epoch[mss["model"]], n_train = seconds_per_epoch(folder, settings, args.epochs)
        print(f"  {mss['model']:9s} {per_epoch[mss['model']]:6.2f} s/epoch on {n_train} training scans")
    runs = pifstudy.planned_runs("r", pif, plan)
    pif_s = sum(per_epoch[r["model"]] * pif["max_epochs"] * (r["fraction"] if r["fraction"] < 1 else 1)
                + args.overhead for r in runs)
    ms_runs = len(msstudy.ARMS) * n_splits * cfg["splits"]["n_repeats"]
    ms_s = ms_runs * (per_epoch[mss["model"]] * mss["max_epochs"] + args.overhead)
    print(f"pif_study {pif['tasks']}: {len(runs)} runs, at most {pif_s / 60:.1f} min of training "
          f"({pif_s / 60 / args.cores:.1f} min on {args.cores} cores)")
    print(f"ms_study: {ms_runs} runs (MS as many sessions as CN and AD here), at most {ms_s / 60:.1f} min "
          f"({ms_s / 60 / args.cores:.1f} min on {args.cores} cores)")


if __name__ == "__main__":
    main()
