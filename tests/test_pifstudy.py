"""braindl.pifstudy: the planning and summaries of 004 study 5 (baseline against PIF)."""

import numpy as np
import pandas as pd
import pytest

from braindl import pifstudy as P
from braindl import pretraining


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


def test_training_subset_is_a_stratified_nested_fifth():
    labels = pd.Series(["F"] * 30 + ["M"] * 20, index=[f"sub-{i:03d}" for i in range(50)])
    fifth = P.training_subset(labels, 0.2, 7)
    half = P.training_subset(labels, 0.5, 7)
    assert len(fifth) == 10 and set(fifth) <= set(half) and set(half) <= set(labels.index)
    assert labels[fifth].value_counts().to_dict() == {"F": 6, "M": 4}
    assert labels[P.training_subset(labels.iloc[[0, 1, 40]], 0.2, 7)].nunique() == 2  # one of each class at least
    assert P.training_subset(labels, 0.2, 8) != fifth


def test_subset_split_keeps_validation_and_test(tmp_path):
    """For the sex task the subset is stratified by sex, whatever the diagnoses."""
    from braindl.io import write_tsv

    rows = [dict(participant_id=f"sub-{i:02d}", session_id=s, set="train" if i < 20 else ("validation" if i < 25 else "test"),
                 diagnosis="AD" if i % 3 else "CN", sex="male" if i % 2 else "F")
            for i in range(30) for s in ("01", "02")]
    write_tsv(tmp_path / "split.tsv", pd.DataFrame(rows))
    out = P.subset_split(tmp_path / "split.tsv", "sex", 0.2, 0, tmp_path / "sub.tsv")
    train = out[out.set == "train"].drop_duplicates("participant_id")
    assert len(train) == 4 and train["sex"].map({"F": "F", "male": "M"}).value_counts().to_dict() == {"F": 2, "M": 2}
    assert len(out[out.set == "train"]) == 8  # both sessions of a kept participant
    table = pd.DataFrame(rows)
    pd.testing.assert_frame_equal(out[out.set != "train"].reset_index(drop=True),
                                  table[table.set != "train"].reset_index(drop=True))


def test_run_settings_follow_the_thesis(default_config):
    study = {**default_config["pif_study"], "augment_flip": 0.5, "augment_shift_voxels": 2}
    hp = {"architecture": "B", "learning_rate": 5e-5, "batch_size": 6, "patience": 16}
    base = P.run_settings(default_config["training"], study, "baseline", hp)
    pif = P.run_settings(default_config["training"], study, "pif", hp)
    assert (base["model"], pif["model"]) == ("vgg3d_b", "pif3d_b")
    for s in (base, pif):
        assert (s["learning_rate"], s["batch_size"], s["early_stopping_patience"]) == (5e-5, 6, 16)
        assert (s["augment_shift_voxels"], s["augment_shift_axis"]) == (2, "sagittal")
    assert (base["augment_flip"], pif["augment_flip"]) == (0.5, 0.0)  # "only translation and not flipping"
    assert "pif_grid" in pif and "pif_grid" not in base
    plan = P.study_plan({**study, "samples": 5, "min_per_architecture": 2}, 2)
    assert set(plan["size"]) == {pretraining.size_label(f) for f in study["fractions"]}
    assert len(plan) == 2 * 5 * 2 * len(study["fractions"])


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


def test_study_tables_select_on_validation_and_read_back_in_the_figure(tmp_path):
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from braindl.io import write_json, write_tsv

    rng = np.random.default_rng(4)
    plan = P.plan(n_splits=3, seed=2, n_samples=2, fractions=(1.0, 0.5), min_per_architecture=1)
    runs = []
    for k, row in enumerate(plan.to_dict("records")):
        for task in ("CN_vs_AD", "sex"):
            classes = ["CN", "AD"] if task == "CN_vs_AD" else ["F", "M"]
            parts = []
            for which, n in (("validation", 6), ("test", 8)):
                truth = np.array([classes[i % 2] for i in range(n)])
                p1 = np.clip(rng.random(n) * 0.7 + 0.3 * (truth == classes[1]), 0, 1)
                parts.append(pd.DataFrame({"participant_id": [f"sub-{which}{i}" for i in range(n)], "session_id": "01",
                                           "set": which, "truth": truth, f"prob_{classes[0]}": 1 - p1,
                                           f"prob_{classes[1]}": p1}))
            name = tmp_path / f"{task}_{k}"
            write_tsv(f"{name}_predictions.tsv", pd.concat(parts))
            write_json(f"{name}_summary.json", {"classes": classes, "epochs": 10 + k % 7, "best_epoch": 3,
                                                "seconds": 2.0 + k, "n_train": 20, "n_test": 8})
            runs.append({**row, "task": task, "predictions": f"{name}_predictions.tsv",
                         "summary": f"{name}_summary.json"})
    table, summary = P.study_tables(runs)
    assert len(table) == len(runs) and table["selected"].sum() == 2 * 3 * 2 * 2
    for r, row in zip(runs, table.itertuples()):
        pred = pd.read_csv(r["predictions"], sep="\t")
        val, test = pred[pred.set == "validation"], pred[pred.set == "test"]
        pos = "AD" if r["task"] == "CN_vs_AD" else "M"
        assert row.validation_roc_auc == pytest.approx(roc_auc_score(val.truth == pos, val[f"prob_{pos}"]))
        assert row.roc_auc == pytest.approx(roc_auc_score(test.truth == pos, test[f"prob_{pos}"]))
        assert row.balanced_accuracy == pytest.approx(balanced_accuracy_score(
            test.truth == pos, test[f"prob_{pos}"] > 0.5))
    for key, g in table.groupby(["task", "split", "family", "fraction"]):
        assert g.loc[g.selected, "validation_roc_auc"].iloc[0] == g["validation_roc_auc"].max()
    kept = table[table.selected & (table.task == "sex") & (table.family == "pif") & (table.fraction == 0.5)]
    row = summary[(summary.task == "sex") & (summary.family == "pif") & (summary.fraction == 0.5)].iloc[0]
    assert row["roc_auc_mean"] == pytest.approx(kept.roc_auc.mean())
    assert row["epochs_mean"] == pytest.approx(kept.epochs.mean())
    write_tsv(tmp_path / "summary.tsv", summary)
    shown = P.study_figure(tmp_path / "summary.tsv", tmp_path / "fig.png", {"dpi": 50})
    merged = shown.merge(summary, on=["task", "family", "fraction"])
    for measure in ("roc_auc", "epochs"):
        m = merged[merged.measure == measure]
        np.testing.assert_allclose(m["mean"], m[f"{measure}_mean"])
        np.testing.assert_allclose(m["sd"], m[f"{measure}_sd"])
    assert len(shown) == 2 * 2 * 2 * 2


def test_planned_runs_and_their_entries(default_config):
    study = {**default_config["pif_study"], "tasks": ["CN_vs_AD", "sex"]}
    plan = P.study_plan(study, 3)
    runs = P.planned_runs("res", study, plan)
    assert len(runs) == 2 * len(plan) and len({r["summary"] for r in runs}) == len(runs)
    assert {r["model"] for r in runs} == {"vgg3d_a", "vgg3d_b", "pif3d_a", "pif3d_b"}
    r = runs[-1]
    search = P.search_runs(default_config["training"], study, plan, r["split"], r["family"], r["size"])
    entry = next(x for x in search if x["sample"] == r["sample"])
    assert len(search) == study["samples"] and entry["run"] == r["sample"] + 1
    assert {k: entry["settings"][k] for k in ("model", "learning_rate", "batch_size")} == \
        {"model": P.MODELS[(r["family"], r["architecture"])], "learning_rate": r["learning_rate"],
         "batch_size": r["batch_size"]}
    with pytest.raises(KeyError, match="no planned search"):
        P.search_runs(default_config["training"], study, plan, 9, "pif", "100")
