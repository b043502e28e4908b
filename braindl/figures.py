"""Figures and their tables, one file each (matplotlib, Agg backend).

Registration comparison (004 study 4, Figures 2 to 4), per task and modality:

* ``variants``: mean balanced accuracy, sensitivity and specificity per
  variant with standard errors, and the Wilcoxon p-value of every variant
  against the first (``none``); MAE and R^2 for regression;
* ``roc``: mean test ROC curve per variant (binary: the disease class;
  multi-class: macro average of one-vs-rest curves) with a shaded standard
  error over runs; regression: predicted against true values;
* ``splits``: balanced accuracy (regression: MAE) per split and variant.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from braindl.io import atomic_path  # noqa: E402

FPR_GRID = np.linspace(0, 1, 101)


PLOTTED_COLUMNS = ["panel", "title", "artist", "label", "category", "x", "y", "err", "image"]


def _tick_names(ticks, labels) -> dict:
    return {float(t): lab.get_text() for t, lab in zip(ticks, labels) if lab.get_text()}


def _nearest(names: dict, v: float):
    if not names:
        return None
    t = min(names, key=lambda k: abs(k - v))
    return names[t] if abs(t - v) < 0.5 else None


def _half_lengths(bars, axis: int) -> list[float]:
    """Half the length of each error bar of a LineCollection (``axis`` 1: vertical bars, 0: horizontal)."""
    return [abs(float(q[1][axis] - q[0][axis])) / 2 for q in bars.get_segments()]


def plotted(fig) -> pd.DataFrame:
    """What a drawn figure shows, read back from its artists: one row per bar (``x`` its position,
    ``y`` its height or, horizontal, the reverse; ``err`` its error bar's half-length; ``category`` the
    tick label at it), per line point (``err``: its error bar, for errorbar()),
    per scatter point, and one per image (``image``: the array
    drawn, masked values as NaN). ``panel`` numbers the figure's axes, ``label`` is the artist's legend
    label. Tests compare these values with the tables a figure was drawn from."""
    from matplotlib.collections import PathCollection
    from matplotlib.container import BarContainer, ErrorbarContainer

    rows = []
    for i, ax in enumerate(fig.get_axes()):
        title = ax.get_title()
        xnames, ynames = _tick_names(ax.get_xticks(), ax.get_xticklabels()), \
            _tick_names(ax.get_yticks(), ax.get_yticklabels())
        for c in ax.containers:
            if not isinstance(c, BarContainer):
                continue
            horizontal = c.orientation == "horizontal"
            errs = []
            if c.errorbar is not None and c.errorbar.lines[2]:
                errs = _half_lengths(c.errorbar.lines[2][0], 0 if horizontal else 1)
            for k, bar in enumerate(c.patches):
                if horizontal:  # x: the value, y: the position (a tick label's)
                    x, y = bar.get_width(), bar.get_y() + bar.get_height() / 2
                    cat = _nearest(ynames, y)
                else:
                    x, y = bar.get_x() + bar.get_width() / 2, bar.get_height()
                    cat = _nearest(xnames, x)
                rows.append(dict(panel=i, title=title, artist="bar", label=c.get_label(), category=cat, x=x, y=y,
                                 err=errs[k] if k < len(errs) else np.nan))
        labels = {}  # a line drawn by errorbar(): its container's label and error bars
        for c in ax.containers:
            if isinstance(c, ErrorbarContainer) and c.lines[0] is not None:
                labels[id(c.lines[0])] = (c.get_label(), _half_lengths(c.lines[2][0], 1) if c.lines[2] else [])
        for line in ax.get_lines():
            label, errs = labels.get(id(line), (line.get_label(), []))
            for k, (x, y) in enumerate(zip(np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))):
                rows.append(dict(panel=i, title=title, artist="line", label=label, x=x, y=y,
                                 err=errs[k] if k < len(errs) else np.nan))
        for coll in ax.collections:
            if isinstance(coll, PathCollection):
                for x, y in np.asarray(coll.get_offsets(), float):
                    rows.append(dict(panel=i, title=title, artist="points", label=coll.get_label(), x=x, y=y))
        for im in ax.get_images():
            arr = im.get_array()
            arr = np.ma.filled(np.ma.asarray(arr, dtype=float), np.nan)
            rows.append(dict(panel=i, title=title, artist="image", label=im.get_label(), image=arr))
    return pd.DataFrame(rows, columns=PLOTTED_COLUMNS)


def save_figure(fig, out, dpi, **savefig) -> pd.DataFrame:
    """Write a matplotlib figure to ``out`` (its suffix is the format) atomically, then close it: every
    figure of the workflow goes through here (``savefig``: more arguments of matplotlib's, over
    ``bbox_inches="tight"``). Returns what it shows (:func:`plotted`)."""
    with atomic_path(out) as tmp:
        fig.savefig(str(tmp), dpi=dpi, format=Path(out).suffix.lstrip("."), **{"bbox_inches": "tight", **savefig})
    shown = plotted(fig)
    plt.close(fig)
    return shown


def _variant_of(path) -> str:
    m = re.search(r"_desc-([A-Za-z0-9]+)_split-", Path(path).name)
    if not m:
        raise ValueError(f"{path}: no _desc-<variant>_split- in the file name")
    return m.group(1)


def mean_roc(predictions: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """TPR on ``FPR_GRID`` of one run's test predictions (macro over one-vs-rest for > 2 classes)."""
    from sklearn.metrics import roc_curve  # here, not at import: the QC and heatmap figures need no sklearn

    test = predictions[predictions["set"] == "test"]
    pos = [classes[1]] if len(classes) == 2 else classes
    curves = []
    for c in pos:
        y = (test["truth"] == c).to_numpy()
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, test[f"prob_{c}"].to_numpy(float))
        curves.append(np.interp(FPR_GRID, fpr, tpr))
    if not curves:
        return np.full_like(FPR_GRID, np.nan)
    out = np.mean(curves, axis=0)
    out[0] = 0.0
    return out


def standard_error(x, axis=0):
    x = np.asarray(x, float)
    n = np.sum(np.isfinite(x), axis=axis)
    return np.nanstd(x, axis=axis, ddof=1) / np.sqrt(np.maximum(n, 1)) if x.shape[axis] > 1 else np.zeros(x.shape[1:])


def figure_variants(summary: pd.DataFrame, comparison: pd.DataFrame, variants: list[str], out,
                    dpi=150) -> pd.DataFrame:
    """Bars of the summary's mean (± SE) per variant and metric, Wilcoxon and corrected t p-values against
    the first variant in a footnote. Returns the bars (variant, metric, mean, se)."""
    regression = "mae" in set(summary["metric"])
    metrics = ["mae", "r2"] if regression else ["balanced_accuracy", "sensitivity", "specificity"]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(metrics), 3.4))
    width = 0.8 / len(variants)
    x = np.arange(len(metrics))
    bars = []
    for i, v in enumerate(variants):
        s = summary[summary.variant == v].set_index("metric")
        means = [s.loc[m, "mean"] if m in s.index else np.nan for m in metrics]
        ses = [s.loc[m, "se"] if m in s.index else np.nan for m in metrics]
        bars += [dict(variant=v, metric=m, mean=a, se=b) for m, a, b in zip(metrics, means, ses)]
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, means, width, yerr=np.nan_to_num(ses), capsize=3, label=v)
    ref = variants[0]
    notes = []
    for v in variants[1:]:
        for m in metrics:
            row = comparison[(comparison.metric == m) & (((comparison.variant_a == ref) & (comparison.variant_b == v))
                                                           | ((comparison.variant_a == v) & (comparison.variant_b == ref)))]
            if len(row):
                p_t = row["corrected_t_p_value"].iloc[0] if "corrected_t_p_value" in row else float("nan")
                notes.append(f"{v} vs {ref}, {m.replace('_', ' ')}: p = {row['p_value'].iloc[0]:.3g} "
                             f"(corrected t: {p_t:.3g})")
    ax.set_xticks(x, [m.replace("_", " ") for m in metrics])
    if not regression:
        ax.set_ylim(0, 1.05)
        ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
    ax.set_ylabel("mean over splits and runs (± SE)")
    ax.legend(title="registration", fontsize=8)
    if notes:
        fig.text(0.01, -0.02, "per-split means, Wilcoxon signed-rank: " + "; ".join(notes), fontsize=6, va="top",
                 wrap=True)
    save_figure(fig, out, dpi)
    return pd.DataFrame(bars, columns=["variant", "metric", "mean", "se"])


def figure_roc_groups(groups: dict, classes: list[str], out, dpi=150, legend_title="registration") -> pd.DataFrame:
    """Mean test ROC curve per group with shaded SE; ``groups`` {label: [predictions TSV, ...]}.

    Returns what is drawn: per group and point of ``FPR_GRID`` the mean TPR, its SE and the
    number of runs (columns group, fpr, tpr, se, n); for regression (no ``classes``) the
    test points (group, truth, prediction)."""
    fig, ax = plt.subplots(figsize=(4, 4))
    drawn = []
    for label, paths in groups.items():
        tables = [pd.read_csv(p, sep="\t", dtype={"participant_id": str}) for p in paths]
        if not tables:
            continue
        if not classes:  # regression: predicted against true values
            t = pd.concat(tables)
            t = t[t["set"] == "test"]
            ax.scatter(t["truth"], t["prediction"], s=10, label=label, alpha=0.7)
            drawn.append(pd.DataFrame({"group": label, "truth": t["truth"].to_numpy(float),
                                       "prediction": t["prediction"].to_numpy(float)}))
            continue
        curves = np.array([mean_roc(t, classes) for t in tables])
        curves = curves[np.isfinite(curves).all(1)]
        if not len(curves):
            continue
        m, se = curves.mean(0), standard_error(curves)
        ax.plot(FPR_GRID, m, label=f"{label} (n={len(curves)})")
        drawn.append(pd.DataFrame({"group": label, "fpr": FPR_GRID, "tpr": m, "se": se, "n": len(curves)}))
        ax.fill_between(FPR_GRID, np.clip(m - se, 0, 1), np.clip(m + se, 0, 1), alpha=0.2)
    if classes:
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate" + ("" if len(classes) == 2 else " (macro one-vs-rest)"))
    else:
        ax.set_xlabel("true value")
        ax.set_ylabel("predicted")
    ax.legend(title=legend_title, fontsize=8)
    save_figure(fig, out, dpi)
    return pd.concat(drawn, ignore_index=True) if drawn else pd.DataFrame()


def figure_roc(predictions: list, variants: list[str], classes: list[str], out, dpi=150) -> pd.DataFrame:
    """The mean ROC curve of each variant's runs (:func:`figure_roc_groups`); returns the curves drawn."""
    groups = {v: [p for p in predictions if _variant_of(p) == v] for v in variants}
    return figure_roc_groups(groups, classes, out, dpi, legend_title="registration")


def figure_splits(metrics: pd.DataFrame, variants: list[str], out, dpi=150) -> pd.DataFrame:
    """Balanced accuracy (regression: MAE) per split and variant, the mean over runs. Returns the points
    (variant, split, value)."""
    metric = "mae" if "mae" in metrics.columns else "balanced_accuracy"
    per = metrics.groupby(["variant", "split"])[metric].mean().unstack("variant")
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(per) + 2), 3.2))
    for v in variants:
        if v in per.columns:
            ax.plot(per.index, per[v], marker="o", label=v)
    ax.set_xlabel("split")
    ax.set_xticks(per.index)
    ax.set_ylabel(metric.replace("_", " ") + " (mean over runs)")
    ax.legend(title="registration", fontsize=8)
    save_figure(fig, out, dpi)
    shown = per[[v for v in variants if v in per.columns]]
    return shown.stack().rename("value").reset_index()[["variant", "split", "value"]]


def variant_figure(kind, metrics_tsv, summary_tsv, comparison_tsv, predictions, variants, style, out) -> pd.DataFrame:
    """Draw one registration-comparison figure (``variants``, ``roc`` or ``splits``); returns what it plots."""
    dpi = int(style.get("dpi", 150))
    if kind == "variants":
        return figure_variants(pd.read_csv(summary_tsv, sep="\t"), pd.read_csv(comparison_tsv, sep="\t"), variants, out, dpi)
    elif kind == "roc":
        first = pd.read_csv(predictions[0], sep="\t")
        classes = [c[5:] for c in first.columns if c.startswith("prob_")]
        return figure_roc(predictions, variants, classes, out, dpi)
    elif kind == "splits":
        return figure_splits(pd.read_csv(metrics_tsv, sep="\t"), variants, out, dpi)
    else:
        raise ValueError(f"unknown figure {kind!r}")
