"""braindl.pifstudy: the planning and summaries of 004 study 5 (baseline against PIF)."""

import numpy as np
import pandas as pd
import pytest

from braindl import pifstudy as P


@pytest.mark.parametrize("seed", range(40))
def test_samples_follow_table1_and_hold_each_architecture_twice(seed):
    """"5 experiments with randomly sampled hyperparameters from Table 1 ... both architecture variants
    needed to be sampled at least two times within five repetitions"."""
    draws = P.sample_hyperparameters(seed)
    assert len(draws) == 5 and [d["sample"] for d in draws] == list(range(5))
    archs = [d["architecture"] for d in draws]
    assert archs.count("A") >= 2 and archs.count("B") >= 2
    for d in draws:
        assert all(d[k] in v for k, v in P.TABLE1.items())
    assert draws == P.sample_hyperparameters(seed)


def test_the_other_parameters_are_drawn_freely():
    draws = [d for s in range(200) for d in P.sample_hyperparameters(s)]
    for key, values in P.TABLE1.items():
        seen = pd.Series([d[key] for d in draws]).value_counts(normalize=True)
        assert set(seen.index) == set(values)
        if key != "architecture":
            np.testing.assert_allclose(seen.sort_index().to_numpy(), 1 / len(values), atol=0.05)
    with pytest.raises(ValueError, match="cannot hold 3 of each"):
        P.sample_hyperparameters(0, n=5, min_per_architecture=3)


def test_plan_shares_the_samples_between_families_and_fractions():
    runs = P.plan(n_splits=3, seed=1)
    assert len(runs) == 3 * 5 * 2 * 2
    for _, g in runs.groupby(["split", "sample"]):
        assert g[["architecture", "learning_rate", "batch_size", "patience"]].nunique().max() == 1
        assert set(g.model) == {P.MODELS[(f, g.architecture.iloc[0])] for f in ("baseline", "pif")}
    assert not runs[runs.split == 1][["architecture", "batch_size"]].equals(
        runs[runs.split == 2][["architecture", "batch_size"]].reset_index(drop=True))


def test_training_subset_is_a_nested_fifth():
    ids = [f"sub-{i:03d}" for i in range(50)]
    fifth = P.training_subset(ids, 0.2, 7)
    half = P.training_subset(ids, 0.5, 7)
    assert len(fifth) == 10 and set(fifth) <= set(half) and set(half) <= set(ids)
    assert len(P.training_subset(ids[:4], 0.2, 7)) == 2


def test_best_sample_per_split_and_the_study_table():
    rng = np.random.default_rng(0)
    runs = P.plan(n_splits=4, seed=3, fractions=(1.0,))
    runs = runs.assign(validation_roc_auc=rng.random(len(runs)),
                       **{m: rng.random(len(runs)) for m in P.MEASURES})
    best = P.select_best(runs)
    assert len(best) == 4 * 2
    for (split, family), g in runs.groupby(["split", "family"]):
        kept = best[(best.split == split) & (best.family == family)].iloc[0]
        assert kept["sample"] == g.loc[g.validation_roc_auc.idxmax(), "sample"]
    table = P.summary_table(best).set_index("family")
    pif = best[best.family == "pif"]
    assert table.loc["pif", "n_splits"] == 4
    assert table.loc["pif", "roc_auc_mean"] == pytest.approx(pif.roc_auc.mean())
    assert table.loc["pif", "epochs_sd"] == pytest.approx(pif.epochs.std(ddof=1))
    assert table.loc["pif", "kept_A"] + table.loc["pif", "kept_B"] == 4
