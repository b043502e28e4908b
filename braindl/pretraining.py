"""001's two-stage transfer sweep: pre-training set size -> fine-tuned test AUC (PROTOCOLS.md section 5).

001 pre-trains an ImageNet model on FDG-PET sets of 100 to 1000 cases and
fine-tunes it on SPECT. Here a model of ``transfer.models`` is pre-trained on
``source_task`` with a fraction of each split's training participants
(stratified by diagnosis; validation and test sets untouched) and fine-tuned on
``target_task``; the same model fine-tuned without pre-training is the
reference. This module subsamples the splits and turns the fine-tuned runs
into a table and a figure; the runs themselves are
:func:`braindl.training.train_run`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from braindl import splits
from braindl.io import write_tsv


def size_label(fraction: float) -> str:
    """``0.25`` -> ``"025"`` (percent, three digits: the ``size-`` entity of the paths)."""
    pct = round(float(fraction) * 100)
    if not 0 < pct <= 100:
        raise ValueError(f"pre-training fraction {fraction} is not in (0, 1]")
    return f"{pct:03d}"


def subsample_split(split_tsv, fraction: float, seed: int, out_tsv) -> pd.DataFrame:
    """Keep ``fraction`` of the training participants (stratified by diagnosis, at least one per class)."""
    table = splits.read_split(split_tsv)
    train = table[table["set"] == "train"]
    people = train.drop_duplicates("participant_id")[["participant_id", "diagnosis"]]
    rng = np.random.default_rng(seed)
    keep = []
    for _, grp in people.groupby("diagnosis", sort=True):
        n = max(1, int(round(fraction * len(grp))))
        keep += list(rng.choice(grp["participant_id"].to_numpy(), size=n, replace=False))
    out = table[(table["set"] != "train") | table["participant_id"].isin(keep)].reset_index(drop=True)
    write_tsv(out_tsv, out)
    return out


def sweep_table(runs: list[dict]) -> pd.DataFrame:
    """Test metrics per fine-tuned run. ``runs``: dicts with source (a size label, or ``none`` for no
    pre-training), split, run, predictions, summary and pretrain_split (the subsampled split the source
    model was pre-trained on, or None)."""
    from braindl.evaluation import run_metrics

    rows = []
    for r in runs:
        summary = json.loads(Path(r["summary"]).read_text())
        pred = pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
        m = run_metrics(pred, summary["classes"], 0, 0.95)
        n_pre = 0
        if r.get("pretrain_split"):
            n_pre = int(splits.read_split(r["pretrain_split"]).query("set == 'train'")["participant_id"].nunique())
        rows.append(dict(source=r["source"], pretrained=r["source"] != "none", n_pretrain=n_pre,
                         split=int(r["split"]), run=int(r["run"]), epochs=summary["epochs"],
                         train_seconds=summary["seconds"], **m))
    return pd.DataFrame(rows)


def run_sweep_table(runs: list[dict], out_tsv) -> None:
    write_tsv(out_tsv, sweep_table(runs))


def sweep_figure(table_tsv, out, style: dict, metric: str | None = None) -> pd.DataFrame:
    """Test ``metric`` of the fine-tuned model against the pre-training set size (mean +- SE over
    splits and runs), the model fine-tuned without pre-training as a dashed reference.

    ``metric``: ROC AUC for a classification target (001), MAE for a regression (001's MMSE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from braindl.figures import save_figure

    t = pd.read_csv(table_tsv, sep="\t", dtype={"source": str})
    metric = metric or ("roc_auc" if "roc_auc" in t.columns else "mae")
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    pre = t[t["pretrained"].astype(str).str.lower() == "true"]
    g = pre.groupby("source")
    x, mean, se = g["n_pretrain"].mean(), g[metric].mean(), g[metric].std(ddof=1) / np.sqrt(g[metric].count())
    ax.errorbar(x.to_numpy(), mean.to_numpy(), yerr=np.nan_to_num(se.to_numpy()), marker="o", capsize=3,
                label="pre-trained, then fine-tuned")
    ref = t[t["pretrained"].astype(str).str.lower() != "true"][metric]
    if len(ref):
        m = float(ref.mean())
        s = float(ref.std(ddof=1) / np.sqrt(len(ref))) if len(ref) > 1 else 0.0
        ax.axhline(m, color="0.4", ls="--", label=f"not pre-trained ({m:.3f})")
        ax.axhspan(m - s, m + s, color="0.8", alpha=0.5)
    ax.set_xlabel("pre-training participants (mean over splits)")
    ax.set_ylabel(f"test {dict(roc_auc='ROC AUC', mae='MAE').get(metric, metric)} after fine-tuning")
    ax.legend(fontsize=8)
    return save_figure(fig, out, int(style.get("dpi", 150)))
