"""004 study 5's experiment: a baseline CNN against its PIF version, each with the thesis' random search.

Planning and summaries only (no torch): which runs exist, with which
hyperparameters, which one each split keeps, and the table of the study.

"As the results of CNNs can considerably vary between single training runs ... we
repeat our experiments in 10 outer folds, each time randomly sampling the data into
training, validation, and test sets. For each of the 10 data splits, we run
hyperparameter optimization on the validation set by performing 5 experiments with
randomly sampled hyperparameters from Table 1. We defined that both architecture
variants needed to be sampled at least two times within five repetitions, whereas
all other parameters had no sampling constraints. The best hyperparameter settings
per validation set are then used on the independent test set, leading to 10 test
scores which were averaged to present the final model performance."

Table 1: architecture [Model A, Model B], learning rate [1e-4, 5e-5], mini-batch
size [4, 6, 12], patience [12, 16]. "we have run an additional comparison on a
randomly sampled 20% subset" of the training data. The measures: AUC ROC,
balanced accuracy, sensitivity, specificity, "the number of iterations until
early stopping occurs" and the training time in seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: 004 study 5, Table 1
TABLE1 = {"architecture": ["A", "B"], "learning_rate": [1.0e-4, 5.0e-5], "batch_size": [4, 6, 12],
          "patience": [12, 16]}
#: the networks of each family and architecture (:mod:`braindl.models`)
MODELS = {("baseline", "A"): "vgg3d_a", ("baseline", "B"): "vgg3d_b", ("pif", "A"): "pif3d_a",
          ("pif", "B"): "pif3d_b"}
MEASURES = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity", "epochs", "seconds")


def sample_hyperparameters(seed: int, n: int = 5, space: dict | None = None,
                           min_per_architecture: int = 2) -> list[dict]:
    """``n`` random draws from ``space`` (Table 1) in which every architecture appears at least
    ``min_per_architecture`` times; the other parameters are drawn without constraint."""
    space = TABLE1 if space is None else space
    archs = list(space["architecture"])
    if min_per_architecture * len(archs) > n:
        raise ValueError(f"{n} samples cannot hold {min_per_architecture} of each of {archs}")
    rng = np.random.default_rng(int(seed))
    chosen = [a for a in archs for _ in range(min_per_architecture)]
    chosen += [archs[int(i)] for i in rng.integers(len(archs), size=n - len(chosen))]
    chosen = [chosen[int(i)] for i in rng.permutation(n)]
    out = []
    for k, arch in enumerate(chosen):
        draw = {key: values[int(rng.integers(len(values)))] for key, values in space.items() if key != "architecture"}
        out.append({"sample": k, "architecture": arch, **draw})
    return out


def plan(n_splits: int, seed: int, n_samples: int = 5, fractions=(1.0, 0.2),
         families=("baseline", "pif")) -> pd.DataFrame:
    """Every run of the study: split x family x training fraction x sample, with its hyperparameters
    and network. The samples are drawn per split and shared by the families and fractions, so that
    baseline and PIF meet the same settings."""
    rows = []
    for split in range(1, int(n_splits) + 1):
        for hp in sample_hyperparameters(int(seed) * 1000 + split, int(n_samples)):
            for family in families:
                for fraction in fractions:
                    rows.append({"split": split, "family": family, "fraction": float(fraction), **hp,
                                 "model": MODELS[(family, hp["architecture"])]})
    return pd.DataFrame(rows)


def training_subset(participants, fraction: float, seed: int) -> list[str]:
    """The "randomly sampled 20% subset" of a split's training participants (at least 2), nested: a
    smaller fraction keeps a subset of a larger one's participants."""
    ids = sorted(set(participants))
    order = [ids[int(i)] for i in np.random.default_rng(int(seed)).permutation(len(ids))]
    k = max(2, int(round(float(fraction) * len(ids))))
    return sorted(order[:k])


def select_best(runs: pd.DataFrame, metric: str = "validation_roc_auc") -> pd.DataFrame:
    """Per split, family and fraction, the sample with the best ``metric`` on the validation set (the
    first on ties)."""
    if runs.empty:
        raise ValueError("no runs to select from")
    ordered = runs.sort_values(["split", "family", "fraction", metric, "sample"],
                               ascending=[True, True, True, False, True], kind="stable")
    return ordered.groupby(["split", "family", "fraction"], sort=True).head(1).reset_index(drop=True)


def summary_table(best: pd.DataFrame) -> pd.DataFrame:
    """Table 2 of study 5: per family and fraction, the mean and SD over splits of the kept runs' test
    measures, the number of splits, and how often each architecture was kept."""
    rows = []
    for (family, fraction), g in best.groupby(["family", "fraction"], sort=True):
        row = {"family": family, "fraction": fraction, "n_splits": len(g)}
        for m in MEASURES:
            row[f"{m}_mean"] = float(g[m].mean())
            row[f"{m}_sd"] = float(g[m].std(ddof=1)) if len(g) > 1 else float("nan")
        for arch in TABLE1["architecture"]:
            row[f"kept_{arch}"] = int((g["architecture"] == arch).sum())
        rows.append(row)
    return pd.DataFrame(rows)
