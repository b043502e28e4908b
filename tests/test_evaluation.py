"""Metrics against scikit-learn, bootstrap intervals, the Wilcoxon comparison and the figures."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm

from braindl import evaluation, figures


def _binary(n=60, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    p1 = np.clip(0.5 + 0.1 * (truth - 0.5) * 2 + rng.normal(0, 0.2, n), 0.01, 0.99)
    return truth, np.c_[1 - p1, p1]


def test_binary_metrics_match_scikit_learn():
    truth, proba = _binary()
    pred = proba.argmax(1)
    m = evaluation.classification_metrics(truth, proba)
    sens = skm.recall_score(truth, pred, pos_label=1)
    spec = skm.recall_score(truth, pred, pos_label=0)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(truth, pred))
    assert m["sensitivity"] == pytest.approx(sens)
    assert m["specificity"] == pytest.approx(spec)
    assert m["precision"] == pytest.approx(skm.precision_score(truth, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(truth, pred))
    assert m["g_mean"] == pytest.approx(np.sqrt(sens * spec))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, proba[:, 1]))
    assert m["nmi"] == pytest.approx(skm.normalized_mutual_info_score(truth, pred))


def test_multiclass_metrics_are_macro_averages():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, 80)
    logits = rng.normal(0, 1, (80, 4))
    logits[np.arange(80), truth] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = proba.argmax(1)
    m = evaluation.classification_metrics(truth, proba)
    assert m["sensitivity"] == pytest.approx(skm.recall_score(truth, pred, average="macro"))
    assert m["precision"] == pytest.approx(skm.precision_score(truth, pred, average="macro"))
    assert m["f1"] == pytest.approx(skm.f1_score(truth, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, proba, multi_class="ovr", average="macro"))
    spec = np.mean([skm.recall_score(truth != c, pred != c) for c in range(4)])
    assert m["specificity"] == pytest.approx(spec)


def test_regression_metrics_match_scikit_learn():
    t = np.array([20.0, 25, 28, 30, 18])
    p = np.array([21.0, 24, 27, 29, 22])
    m = evaluation.regression_metrics(t, p)
    assert m == pytest.approx(dict(mae=skm.mean_absolute_error(t, p), mse=skm.mean_squared_error(t, p),
                                   r2=skm.r2_score(t, p)))


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_n():
    widths = []
    for n in (40, 400):
        truth, proba = _binary(n)
        point = evaluation.classification_metrics(truth, proba)
        ci = evaluation.bootstrap_ci(evaluation.classification_metrics, (truth, proba), 300, 0.95)
        lo, hi = ci["balanced_accuracy"]
        assert lo <= point["balanced_accuracy"] <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def _metrics_table():
    rng = np.random.default_rng(2)
    rows = []
    for split in range(1, 9):
        for v, base in (("none", 0.6), ("linear", 0.75), ("syn", 0.78)):
            rows.append(dict(task="CN_vs_AD", modality="T1w", variant=v, split=split, run=1,
                             **{m: base + rng.normal(0, 0.03) for m in evaluation.CLASSIFICATION_METRICS}))
    return pd.DataFrame(rows)


def test_variant_comparison_is_scipy_wilcoxon():
    table = _metrics_table()
    comp = evaluation.compare_variants(table, ("balanced_accuracy",)).set_index(["variant_a", "variant_b"])
    a = table[table.variant == "none"].balanced_accuracy.to_numpy()
    b = table[table.variant == "linear"].balanced_accuracy.to_numpy()
    assert comp.loc[("none", "linear"), "p_value"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert comp.loc[("none", "linear"), "mean_difference"] < 0
    summary = evaluation.summarise(table, ("balanced_accuracy",)).set_index("variant")
    assert summary.loc["linear", "se"] == pytest.approx(b.std(ddof=1) / np.sqrt(len(b)))


def test_registration_figures_are_drawn(tmp_path):
    table = _metrics_table()
    metrics = evaluation.CLASSIFICATION_METRICS
    variants = ["none", "linear", "syn"]
    figures.figure_variants(evaluation.summarise(table, metrics), evaluation.compare_variants(table, metrics),
                            variants, tmp_path / "bars.png", dpi=50)
    figures.figure_splits(table, variants, tmp_path / "splits.png", dpi=50)
    preds = []
    for v in variants:
        truth, proba = _binary(30, seed=len(v))
        p = tmp_path / f"task-X_desc-{v}_split-01_run-01_predictions.tsv"
        pd.DataFrame(dict(set="test", truth=np.where(truth, "AD", "CN"), prob_CN=proba[:, 0],
                          prob_AD=proba[:, 1])).to_csv(p, sep="\t", index=False)
        preds.append(p)
    figures.figure_roc(preds, variants, ["CN", "AD"], tmp_path / "roc.png", dpi=50)
    for name in ("bars", "splits", "roc"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
    tpr = figures.mean_roc(pd.read_csv(preds[0], sep="\t"), ["CN", "AD"])
    assert tpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(tpr) >= 0)
