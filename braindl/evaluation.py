"""Metrics of trained runs, bootstrap intervals and the comparison of registration variants.

Classification (PROTOCOLS.md section 6): balanced accuracy, sensitivity,
specificity, precision, F1, G-mean, ROC AUC and normalised mutual information.
For two classes the second class of the task (the disease) is the positive one;
for more, sensitivity, specificity, precision and F1 are macro averages over
one-vs-rest and ROC AUC is the macro one-vs-rest AUC. G-mean is
sqrt(sensitivity x specificity) of those (two classes: of the disease class;
more: of the macro-averaged one-vs-rest sensitivity and specificity, not the
k-th root of the per-class recalls that imbalanced-learn calls G-mean).
Regression: MAE, MSE and R^2.

95 % intervals: percentile bootstrap over **participants** (``n_boot``
resamples, fixed seed): a participant's test scans are drawn together, and when
several runs are summarised (the transfer table) one draw of participants is
applied to every run and the runs' metrics averaged, since repeated-holdout
test sets overlap. Variants are compared on per-split means (the runs of one
split share its test set) with the Wilcoxon signed-rank test and the corrected
resampled t-test of Nadeau and Bengio (2003), the usual test for repeated
holdout.
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
    # scikit-learn's balanced accuracy, from the same confusion matrix: the mean recall over the classes
    # the truth holds (one scikit-learn call less per bootstrap draw)
    out = dict(balanced_accuracy=float(np.mean(sens_c[present])), sensitivity=float(sens),
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


def bootstrap_ci(fn, arrays: tuple, n_boot: int, ci: float, seed: int = 0, groups=None) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every metric ``fn(*arrays)`` returns, over ``n_boot`` resamples of rows, or
    of ``groups`` (one label per row, e.g. the participant: a group's rows are drawn together)."""
    return runs_bootstrap_ci(fn, [arrays], n_boot, ci, seed, None if groups is None else [groups])


def runs_bootstrap_ci(fn, runs: list[tuple], n_boot: int, ci: float, seed: int = 0,
                      groups: list | None = None) -> dict[str, tuple[float, float]]:
    """Percentile intervals of the mean over runs of ``fn(*arrays)``: each draw resamples the groups
    (participants) of all runs with replacement, takes every row of a drawn group (as often as it is
    drawn) in each run that tested it, and averages the runs' metrics. ``runs``: one tuple of arrays
    per run; ``groups``: one label array per run (None: every row its own group)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = [np.array([f"{i}:{j}" for j in range(len(r[0]))]) for i, r in enumerate(runs)]
    groups = [np.asarray(g).astype(str) for g in groups]
    labels = np.unique(np.concatenate(groups))
    rows_of = [{g: np.flatnonzero(gr == g) for g in np.unique(gr)} for gr in groups]
    draws: dict[str, list] = {}
    for _ in range(int(n_boot)):
        drawn, counts = np.unique(rng.choice(labels, len(labels), replace=True), return_counts=True)
        per_run: dict[str, list] = {}
        for arrays, index in zip(runs, rows_of):
            idx = np.concatenate([np.repeat(index[g], c) for g, c in zip(drawn, counts) if g in index]
                                 or [np.array([], int)]).astype(int)
            if len(idx) == 0:
                continue
            with np.errstate(all="ignore"):
                for k, v in fn(*(a[idx] for a in arrays)).items():
                    per_run.setdefault(k, []).append(v)
        for k, v in per_run.items():
            v = np.asarray(v, float)
            draws.setdefault(k, []).append(float(np.nanmean(v)) if np.isfinite(v).any() else np.nan)
    lo, hi = (1 - ci) / 2 * 100, (1 + ci) / 2 * 100
    out = {}
    for k, v in draws.items():
        v = np.asarray(v, float)
        out[k] = (float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))) if np.isfinite(v).any() \
            else (np.nan, np.nan)
    return out


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
        groups = test["participant_id"].to_numpy() if "participant_id" in test.columns else None
        for k, (lo, hi) in bootstrap_ci(fn, arrays, n_boot, ci, seed, groups).items():
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
                         train_seconds=summary["seconds"], n_train=summary.get("n_train", np.nan), **m))
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


def corrected_resampled_ttest(diff, n_train: float, n_test: float) -> tuple[float, float]:
    """Nadeau and Bengio's (2003) corrected resampled t-test of the differences ``diff`` of J repeated
    train/test splits: t = mean(d) / sqrt((1/J + n_test/n_train) * var(d)), var with J - 1 degrees of
    freedom, two-sided p from Student's t with J - 1 degrees of freedom. The n_test/n_train term
    replaces 1/J's assumption of independent splits (their training sets overlap). Returns (t, p);
    (nan, nan) with fewer than 2 splits, (0, 1) when every difference is 0."""
    d = np.asarray(diff, float)
    d = d[np.isfinite(d)]
    j = len(d)
    if j < 2:
        return np.nan, np.nan
    var = d.var(ddof=1)
    if var == 0:
        return (0.0, 1.0) if d.mean() == 0 else (float(np.sign(d.mean()) * np.inf), 0.0)
    t = d.mean() / np.sqrt((1 / j + n_test / n_train) * var)
    return float(t), float(2 * stats.t.sf(abs(t), j - 1))


COMPARISON_COLUMNS = ["task", "modality", "variant_a", "variant_b", "metric", "n_splits", "mean_difference",
                      "statistic", "p_value", "corrected_t", "corrected_t_p_value", "n_train", "n_test"]


def compare_variants(table: pd.DataFrame, metrics: tuple) -> pd.DataFrame:
    """Each pair of variants, per metric, on per-split means (the runs of one split share a test set, so
    they are averaged first): the Wilcoxon signed-rank test and the corrected resampled t-test
    (:func:`corrected_resampled_ttest`, with the splits' mean training and test sizes)."""
    rows = []
    for (task, mod), grp in table.groupby(["task", "modality"], sort=False):
        variants = list(dict.fromkeys(grp["variant"]))
        sizes = grp.groupby("split")[[c for c in ("n_train", "n_test") if c in grp.columns]].mean()
        for a, b in itertools.combinations(variants, 2):
            for m in metrics:
                pa = grp[grp.variant == a].groupby("split")[m].mean()
                pb = grp[grp.variant == b].groupby("split")[m].mean()
                both = pd.concat([pa, pb], axis=1, keys=["a", "b"]).dropna()
                diff = both["a"] - both["b"]
                if len(both) == 0 or np.allclose(diff, 0):
                    p, stat = 1.0, 0.0
                else:
                    res = stats.wilcoxon(both["a"], both["b"], zero_method="zsplit")
                    p, stat = float(res.pvalue), float(res.statistic)
                n_train = float(sizes.loc[both.index, "n_train"].mean()) if "n_train" in sizes else np.nan
                n_test = float(sizes.loc[both.index, "n_test"].mean()) if "n_test" in sizes else np.nan
                t, p_t = corrected_resampled_ttest(diff, n_train, n_test) if np.isfinite(n_train + n_test) \
                    else (np.nan, np.nan)
                rows.append(dict(task=task, modality=mod, variant_a=a, variant_b=b, metric=m, n_splits=len(both),
                                 mean_difference=float(diff.mean()) if len(both) else np.nan,
                                 statistic=stat, p_value=p, corrected_t=t, corrected_t_p_value=p_t,
                                 n_train=n_train, n_test=n_test))
    # one variant has no pair: the table keeps its header (readers see no comparison, not a broken file)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def run_evaluation(runs: list[dict], n_boot: int, ci: float, out_metrics, out_summary, out_comparison) -> None:
    """Write the per-run metrics table, its summary per variant and the variant comparison."""
    table = metrics_table(runs, n_boot, ci)
    metrics = CLASSIFICATION_METRICS if "balanced_accuracy" in table.columns else REGRESSION_METRICS
    write_tsv(out_metrics, table)
    write_tsv(out_summary, summarise(table, metrics))
    write_tsv(out_comparison, compare_variants(table, metrics))
