"""Metrics of trained runs, bootstrap intervals and the comparison of registration variants.

Classification (PROTOCOLS.md section 6): balanced accuracy, sensitivity,
specificity, precision, F1, G-mean (sqrt(sensitivity x specificity)), ROC AUC
and normalised mutual information. For two classes the second class of the
task (the disease) is the positive one; for more, sensitivity, specificity,
precision and F1 are macro averages over one-vs-rest and ROC AUC is the macro
one-vs-rest AUC. Regression: MAE, MSE and R^2.

95 % intervals: percentile bootstrap over the test scans (``n_boot``
resamples, fixed seed). Variants are compared on the per-split metric with the
Wilcoxon signed-rank test (paired by split and run).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm

from braindl.io import write_tsv

CLASSIFICATION_METRICS = ("balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "g_mean",
                          "roc_auc", "nmi")
REGRESSION_METRICS = ("mae", "mse", "r2")


def classification_metrics(truth: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Metrics of integer labels ``truth`` (0..k-1) against class probabilities ``proba`` (n, k)."""
    truth = np.asarray(truth, dtype=int)
    proba = np.asarray(proba, dtype=float)
    k = proba.shape[1]
    pred = proba.argmax(1)
    labels = list(range(k))
    cm = skm.confusion_matrix(truth, pred, labels=labels)
    tp = np.diag(cm).astype(float)
    fn = cm.sum(1) - tp
    fp = cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    with np.errstate(divide="ignore", invalid="ignore"):
        sens_c = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        spec_c = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
        prec_c = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        f1_c = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    present = np.unique(truth)
    if k == 2:
        sens, spec, prec, f1 = sens_c[1], spec_c[1], prec_c[1], f1_c[1]
    else:
        sens, spec = np.nanmean(sens_c[present]), np.nanmean(spec_c[present])
        prec, f1 = float(np.mean(prec_c[present])), float(np.mean(f1_c[present]))
    out = dict(balanced_accuracy=float(skm.balanced_accuracy_score(truth, pred)), sensitivity=float(sens),
               specificity=float(spec), precision=float(prec), f1=float(f1),
               g_mean=float(np.sqrt(sens * spec)) if np.isfinite(sens * spec) else np.nan,
               nmi=float(skm.normalized_mutual_info_score(truth, pred)))
    if len(present) < 2:
        out["roc_auc"] = np.nan
    elif k == 2:
        out["roc_auc"] = float(skm.roc_auc_score(truth, proba[:, 1]))
    else:
        cols = list(present)
        p = proba[:, cols] / proba[:, cols].sum(1, keepdims=True)
        out["roc_auc"] = float(skm.roc_auc_score(truth, p, multi_class="ovr", average="macro", labels=cols)
                               if len(cols) > 2 else skm.roc_auc_score(truth == cols[1], p[:, 1]))
    return out


def regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    return dict(mae=float(skm.mean_absolute_error(truth, pred)), mse=float(skm.mean_squared_error(truth, pred)),
                r2=float(skm.r2_score(truth, pred)) if len(truth) > 1 else np.nan)


def bootstrap_ci(fn, arrays: tuple, n_boot: int, ci: float, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every metric ``fn(*arrays)`` returns, over ``n_boot`` resamples of rows."""
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    draws: dict[str, list] = {}
    for _ in range(int(n_boot)):
        idx = rng.integers(0, n, n)
        for k, v in fn(*(a[idx] for a in arrays)).items():
            draws.setdefault(k, []).append(v)
    lo, hi = (1 - ci) / 2 * 100, (1 + ci) / 2 * 100
    return {k: (float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))) if np.isfinite(v).any()
            else (np.nan, np.nan) for k, v in draws.items()}


def prediction_arrays(pred: pd.DataFrame, classes: list[str]):
    """(truth, probabilities) of a classification predictions table, or (truth, prediction) for regression."""
    if not classes:
        return pred["truth"].to_numpy(float), pred["prediction"].to_numpy(float)
    truth = pred["truth"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return truth, pred[[f"prob_{c}" for c in classes]].to_numpy(float)


def run_metrics(pred: pd.DataFrame, classes: list[str], n_boot: int, ci: float, seed: int = 0) -> dict:
    """Metrics of one run's test predictions with ``ci`` bootstrap intervals (``<metric>_lo``/``_hi``)."""
    test = pred[pred["set"] == "test"]
    fn = classification_metrics if classes else regression_metrics
    arrays = prediction_arrays(test, classes)
    point = fn(*arrays)
    row = dict(point)
    if n_boot:
        for k, (lo, hi) in bootstrap_ci(fn, arrays, n_boot, ci, seed).items():
            row[f"{k}_lo"], row[f"{k}_hi"] = lo, hi
    row["n_test"] = len(test)
    return row


def metrics_table(runs: list[dict], n_boot: int, ci: float) -> pd.DataFrame:
    """One row per run: ``runs`` are dicts with variant, split, run, predictions (path) and summary (path)."""
    rows = []
    for r in runs:
        summary = json.loads(Path(r["summary"]).read_text())
        pred = pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
        m = run_metrics(pred, summary["classes"], n_boot, ci, seed=int(r["split"]) * 100 + int(r["run"]))
        rows.append(dict(task=summary["task"], modality=r["modality"], variant=r["variant"], split=int(r["split"]),
                         run=int(r["run"]), epochs=summary["epochs"], best_epoch=summary["best_epoch"],
                         train_seconds=summary["seconds"], **m))
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame, metrics: tuple) -> pd.DataFrame:
    """Mean, standard error and count of each metric per (task, modality, variant)."""
    rows = []
    for key, grp in table.groupby(["task", "modality", "variant"], sort=False):
        for m in metrics:
            v = grp[m].dropna().to_numpy(float)
            rows.append(dict(task=key[0], modality=key[1], variant=key[2], metric=m, mean=float(v.mean()) if len(v) else np.nan,
                             se=float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan, n=len(v)))
    return pd.DataFrame(rows)


def compare_variants(table: pd.DataFrame, metrics: tuple) -> pd.DataFrame:
    """Wilcoxon signed-rank test between each pair of variants, paired by split and run."""
    rows = []
    for (task, mod), grp in table.groupby(["task", "modality"], sort=False):
        variants = list(dict.fromkeys(grp["variant"]))
        for a, b in itertools.combinations(variants, 2):
            for m in metrics:
                pa = grp[grp.variant == a].set_index(["split", "run"])[m]
                pb = grp[grp.variant == b].set_index(["split", "run"])[m]
                both = pd.concat([pa, pb], axis=1, keys=["a", "b"]).dropna()
                diff = both["a"] - both["b"]
                if len(both) == 0 or np.allclose(diff, 0):
                    p, stat = 1.0, 0.0
                else:
                    res = stats.wilcoxon(both["a"], both["b"], zero_method="zsplit")
                    p, stat = float(res.pvalue), float(res.statistic)
                rows.append(dict(task=task, modality=mod, variant_a=a, variant_b=b, metric=m, n_pairs=len(both),
                                 mean_difference=float(diff.mean()) if len(both) else np.nan,
                                 statistic=stat, p_value=p))
    return pd.DataFrame(rows)


def run_evaluation(runs: list[dict], n_boot: int, ci: float, out_metrics, out_summary, out_comparison) -> None:
    """Write the per-run metrics table, its summary per variant and the variant comparison."""
    table = metrics_table(runs, n_boot, ci)
    metrics = CLASSIFICATION_METRICS if "balanced_accuracy" in table.columns else REGRESSION_METRICS
    write_tsv(out_metrics, table)
    write_tsv(out_summary, summarise(table, metrics))
    write_tsv(out_comparison, compare_variants(table, metrics))
