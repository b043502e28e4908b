"""Metrics against scikit-learn, bootstrap intervals, the Wilcoxon comparison and the figures."""

import warnings

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
            rows.append(dict(task="CN_vs_AD", modality="T1w", variant=v, split=split, run=1, n_train=80, n_test=20,
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


def test_variant_comparison_pairs_per_split_means():
    """Runs of one split share a test set: they are averaged before pairing (8 splits x 3 runs -> 8 pairs)."""
    table = _metrics_table()
    rng = np.random.default_rng(5)
    more = pd.concat([table.assign(run=r, balanced_accuracy=table.balanced_accuracy + rng.normal(0, 0.02, len(table)))
                      for r in (1, 2, 3)], ignore_index=True)
    comp = evaluation.compare_variants(more, ("balanced_accuracy",)).set_index(["variant_a", "variant_b"])
    row = comp.loc[("none", "syn")]
    means = more.groupby(["variant", "split"]).balanced_accuracy.mean()
    a, b = means["none"].to_numpy(), means["syn"].to_numpy()
    assert row["n_splits"] == 8
    assert row["p_value"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    # the corrected resampled t-test, by hand: J = 8 splits, 20 test / 80 training participants
    d = a - b
    t = d.mean() / np.sqrt((1 / 8 + 20 / 80) * d.var(ddof=1))
    assert row["corrected_t"] == pytest.approx(t)
    assert row["corrected_t_p_value"] == pytest.approx(2 * stats.t.sf(abs(t), 7))


def test_corrected_resampled_ttest_by_hand():
    d = np.array([0.02, 0.05, -0.01, 0.04, 0.03])
    t, p = evaluation.corrected_resampled_ttest(d, n_train=80, n_test=20)
    # mean 0.026, sample variance 0.00212 / 4 = 0.00053: t = 0.026 / sqrt((0.2 + 0.25) * 0.00053) = 1.6836
    assert t == pytest.approx(0.026 / np.sqrt(0.45 * 0.00053))
    assert t == pytest.approx(1.6836, abs=1e-4)
    assert p == pytest.approx(2 * stats.t.sf(t, 4))
    # the naive paired t-test (no n_test/n_train term) is the same statistic with 1/J alone: larger t, smaller p
    naive = stats.ttest_1samp(d, 0)
    assert naive.statistic == pytest.approx(0.026 / np.sqrt(0.2 * 0.00053)) and naive.pvalue < p
    assert np.isnan(evaluation.corrected_resampled_ttest([0.1], 80, 20)[0])
    assert evaluation.corrected_resampled_ttest([0.0, 0.0, 0.0], 80, 20) == (0.0, 1.0)


def test_participant_bootstrap_never_splits_a_participant():
    """Two scans per participant: every draw holds both scans of a drawn participant, or neither."""
    pid = np.repeat(np.arange(20), 2)

    def whole(p):
        return {"whole": float(np.all(np.bincount(p, minlength=20) % 2 == 0))}

    assert evaluation.bootstrap_ci(whole, (pid,), 200, 0.95, groups=pid)["whole"] == (1.0, 1.0)
    assert evaluation.bootstrap_ci(whole, (pid,), 200, 0.95)["whole"][0] == 0.0  # scan-level draws split them


def test_runs_bootstrap_is_not_narrowed_by_runs_that_test_the_same_participants():
    truth, proba = _binary(60, seed=3)
    groups = np.array([f"sub-{i:02d}" for i in range(60)])
    fn = evaluation.classification_metrics
    one = evaluation.runs_bootstrap_ci(fn, [(truth, proba)], 300, 0.95, seed=4, groups=[groups])
    two = evaluation.runs_bootstrap_ci(fn, [(truth, proba)] * 2, 300, 0.95, seed=4, groups=[groups] * 2)
    assert two["balanced_accuracy"] == pytest.approx(one["balanced_accuracy"])
    pooled = evaluation.bootstrap_ci(fn, (np.r_[truth, truth], np.r_[proba, proba]), 300, 0.95, seed=4)
    width = lambda ci: ci["balanced_accuracy"][1] - ci["balanced_accuracy"][0]  # noqa: E731
    assert width(pooled) < 0.85 * width(two)


def test_registration_figures_plot_the_tables_values(tmp_path):
    """004 study 4's three figures: the bars are the summary's per-variant means and SEs of the split
    means, the split lines the per-split means, the ROC curve of a variant the mean of its runs' curves,
    whose area is scikit-learn's AUC of each run up to the grid."""
    table = _metrics_table()
    metrics = evaluation.CLASSIFICATION_METRICS
    variants = ["none", "linear", "syn"]
    bars = figures.figure_variants(evaluation.summarise(table, metrics), evaluation.compare_variants(table, metrics),
                                   variants, tmp_path / "bars.png", dpi=50).set_index(["variant", "metric"])
    for v in variants:
        ba = table[table.variant == v].groupby("split").balanced_accuracy.mean()
        assert bars.loc[(v, "balanced_accuracy"), "mean"] == pytest.approx(ba.mean())
        assert bars.loc[(v, "balanced_accuracy"), "se"] == pytest.approx(ba.std(ddof=1) / np.sqrt(len(ba)))
    assert len(bars) == 3 * 3  # balanced accuracy, sensitivity, specificity per variant
    lines = figures.figure_splits(table, variants, tmp_path / "splits.png", dpi=50)
    assert len(lines) == 8 * 3
    got = lines.set_index(["variant", "split"])["value"]
    want = table.groupby(["variant", "split"]).balanced_accuracy.mean()
    assert got.sort_index().to_numpy() == pytest.approx(want.sort_index().to_numpy())
    preds, aucs = [], {}
    for v in variants:
        for split in ("01", "02"):
            truth, proba = _binary(30, seed=len(v) + int(split))
            p = tmp_path / f"task-X_desc-{v}_split-{split}_run-01_predictions.tsv"
            pd.DataFrame(dict(set="test", truth=np.where(truth, "AD", "CN"), prob_CN=proba[:, 0],
                              prob_AD=proba[:, 1])).to_csv(p, sep="\t", index=False)
            preds.append(p)
            aucs.setdefault(v, []).append(skm.roc_auc_score(truth, proba[:, 1]))
    curves = figures.figure_roc(preds, variants, ["CN", "AD"], tmp_path / "roc.png", dpi=50)
    for v in variants:
        c = curves[curves.group == v]
        runs = [figures.mean_roc(pd.read_csv(p, sep="\t"), ["CN", "AD"]) for p in preds if f"desc-{v}_" in p.name]
        assert c.tpr.to_numpy() == pytest.approx(np.mean(runs, axis=0))
        assert (c.n == 2).all() and c.tpr.iloc[0] == 0 and c.tpr.iloc[-1] == 1 and np.all(np.diff(c.tpr) >= 0)
        assert np.trapezoid(c.tpr, c.fpr) == pytest.approx(np.mean(aucs[v]), abs=0.02)
    for name in ("bars", "splits", "roc"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_variant_has_an_empty_comparison_that_reads_back(tmp_path):
    """A study on one registration variant: the comparison table keeps its header, the figure draws."""
    from braindl.io import write_tsv

    table = _metrics_table()
    one = table[table.variant == "linear"]
    metrics = evaluation.CLASSIFICATION_METRICS
    comp = evaluation.compare_variants(one, metrics)
    assert comp.empty and list(comp.columns) == evaluation.COMPARISON_COLUMNS
    write_tsv(tmp_path / "summary.tsv", evaluation.summarise(one, metrics))
    write_tsv(tmp_path / "comparison.tsv", comp)
    bars = figures.variant_figure("variants", None, tmp_path / "summary.tsv", tmp_path / "comparison.tsv", [],
                                  ["linear"], {"dpi": 40}, tmp_path / "bars.png")
    lin = one.groupby("split").balanced_accuracy.mean()
    assert bars.set_index("metric").loc["balanced_accuracy", "mean"] == pytest.approx(lin.mean())
    assert set(bars.variant) == {"linear"}


def test_plotted_reads_back_what_each_artist_draws(tmp_path):
    """figures.plotted, which every figure test relies on: bars (vertical with error bars, horizontal),
    errorbar lines, plain lines, scatter points and masked images, each with its label and tick name."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2)
    a.bar([0, 1], [0.3, 0.7], yerr=[0.05, 0.1], label="ba")
    a.set_xticks([0, 1], ["none", "syn"])
    a.errorbar([0, 1], [0.2, 0.4], yerr=[0.01, 0.02], label="curve")
    a.scatter([0.5], [0.9], label="dot")
    b.barh([0, 1], [5.0, 2.0], label="h")
    b.set_yticks([0, 1], ["Hippocampus", "Precuneus"])
    b.imshow(np.ma.masked_less(np.array([[0.0, 2.0], [3.0, 4.0]]), 1.0))
    shown = figures.save_figure(fig, tmp_path / "f.png", 40)
    bars = shown[(shown.panel == 0) & (shown.artist == "bar")]
    assert bars.category.tolist() == ["none", "syn"] and bars.y.tolist() == pytest.approx([0.3, 0.7])
    assert bars.err.tolist() == pytest.approx([0.05, 0.1]) and set(bars.label) == {"ba"}
    line = shown[shown.label == "curve"]
    assert line.y.tolist() == pytest.approx([0.2, 0.4]) and line.err.tolist() == pytest.approx([0.01, 0.02])
    assert shown[shown.artist == "points"][["x", "y"]].iloc[0].tolist() == [0.5, 0.9]
    h = shown[(shown.panel == 1) & (shown.artist == "bar")].set_index("category").x
    assert h.to_dict() == {"Hippocampus": 5.0, "Precuneus": 2.0}
    image = shown[shown.artist == "image"].image.iloc[0]
    assert np.isnan(image[0, 0]) and image[1, 1] == 4.0
    assert not plt.get_fignums()  # closed


@pytest.mark.parametrize("case", ["binary", "one_class", "multiclass", "class_not_in_truth", "class_never_predicted"])
def test_balanced_accuracy_is_scikit_learns(case):
    """classification_metrics reads balanced accuracy off its confusion matrix (mean recall over the classes
    in the truth): scikit-learn's balanced_accuracy_score, whatever classes are missing."""
    rng = np.random.default_rng(len(case))
    k, n = (2, 30) if case in ("binary", "one_class") else (4, 50)
    truth = rng.integers(0, k, n)
    if case == "one_class":
        truth[:] = 1
    if case == "class_not_in_truth":
        truth[truth == 2] = 0
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += 1.0
    if case == "class_never_predicted":
        logits[:, 3] = -10
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    got = evaluation.classification_metrics(truth, proba)["balanced_accuracy"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns of predicted classes the truth lacks
        want = skm.balanced_accuracy_score(truth, proba.argmax(1))
    assert got == want  # the same float64 operations in the same order
    assert 0 < got < 1 or case == "one_class"
