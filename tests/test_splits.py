"""Subject-level splits: no participant in two sets, baseline-only tests, stratification, sex balance."""

import numpy as np
import pandas as pd
import pytest

from braindl import splits
from braindl.io import write_tsv

SETTINGS = dict(method="repeated_holdout", n_splits=4, test_fraction=0.2, validation_fraction=0.2,
                age_bin_years=5, balance_sex=False, seed=0)


def manifest(n=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        dx = ["CN", "MCI", "AD", "DLB", "FTLD"][i % 5]
        age, sex = 60 + rng.random() * 25, "MF"[rng.integers(2)]
        for s in range(1 + i % 3):
            rows.append(dict(participant_id=f"sub-{i:03d}", session_id=f"{s + 1:02d}", modality="T1w",
                             diagnosis=dx, age=round(age, 1), sex=sex, mmse=12 + i % 19))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("method", ["repeated_holdout", "kfold"])
@pytest.mark.parametrize("task", list(splits.TASKS))
def test_participants_never_cross_sets_and_tests_keep_baselines(task, method):
    m = manifest()
    subjects = splits.subject_table(m, task, 5)
    made = splits.make_splits(subjects, {**SETTINGS, "method": method, "n_splits": 3})
    assert len(made) == 3
    for sets in made:
        table = splits.session_rows(subjects, sets)
        splits.check_disjoint(table)
        assert set(table["diagnosis"]) <= set(splits.TASKS[task])
        test = table[table.set == "test"]
        assert test.groupby("participant_id").size().max() == 1
        assert (test["session_id"] == "01").all()
        train = table[table.set == "train"]
        n_ses = m.drop_duplicates(["participant_id", "session_id"]).groupby("participant_id").size()
        assert (train.groupby("participant_id").size() == n_ses[train.participant_id.unique()]).all()
        if not splits.is_regression(task):
            for name in splits.SETS:  # stratified: every class in every set
                assert set(table[table.set == name].diagnosis) == set(splits.TASKS[task])
    if method == "kfold":
        tests = [set(s[s == "test"].index) for s in made]
        assert set().union(*tests) == set(subjects.participant_id)
        assert sum(len(t) for t in tests) == len(subjects)


def test_mmse_task_keeps_mmse_15_or_more_and_leaves_ftld_out():
    subjects = splits.subject_table(manifest(), "MMSE", 5)
    m = manifest().set_index("participant_id")
    assert "FTLD" not in set(subjects.diagnosis)
    assert (m.loc[subjects.participant_id, "mmse"] >= 15).all()


def test_sex_balanced_within_diagnosis_and_age_bin():
    subjects = splits.subject_table(manifest(200), "CN_MCI_AD_DLB", 5)
    bal = splits.balance_sex(subjects, 0)
    assert 0 < len(bal) < len(subjects)
    counts = bal.groupby(["diagnosis", "age_bin", "sex"]).size().unstack("sex")
    assert (counts["F"] == counts["M"]).all()


def test_same_seed_same_split_other_seed_other_split():
    subjects = splits.subject_table(manifest(), "CN_vs_AD", 5)
    a = splits.make_splits(subjects, SETTINGS)
    b = splits.make_splits(subjects, SETTINGS)
    c = splits.make_splits(subjects, {**SETTINGS, "seed": 7})
    assert all(x.equals(y) for x, y in zip(a, b))
    assert not all(x.equals(y) for x, y in zip(a, c))
    assert not a[0].equals(a[1])  # the splits of one run differ


def test_leaking_split_is_refused_naming_file_and_participant(tmp_path):
    subjects = splits.subject_table(manifest(), "CN_vs_AD", 5)
    table = splits.session_rows(subjects, splits.make_splits(subjects, SETTINGS)[0])
    pid = table[table.set == "train"].participant_id.iloc[0]
    leak = pd.concat([table, table[table.participant_id == pid].assign(set="test")])
    path = tmp_path / "leak_split.tsv"
    write_tsv(path, leak)
    with pytest.raises(splits.SplitError, match=f"{path}.*{pid}"):
        splits.read_split(path)


def test_too_few_participants_is_a_clear_error():
    subjects = splits.subject_table(manifest(8), "CN_vs_AD", 5)
    with pytest.raises(splits.SplitError, match="too few"):
        splits.make_splits(subjects, SETTINGS)


def test_small_holdouts_still_get_every_diagnosis():
    """18 participants (10 CN, 8 AD, as the default cohort): the validation share is 3 participants,
    fewer than the diagnosis x sex strata, so it is stratified on the diagnosis alone."""
    rng = np.random.default_rng(3)
    rows = [dict(participant_id=f"sub-{i:03d}", session_id="01", modality="T1w", diagnosis="CN" if i < 10 else "AD",
                 age=round(60 + 25 * rng.random(), 1), sex="MF"[i % 2], mmse=25) for i in range(18)]
    subjects = splits.subject_table(pd.DataFrame(rows), "CN_vs_AD", 5)
    for seed in range(10):
        for sets in splits.make_splits(subjects, {**SETTINGS, "n_splits": 3, "seed": seed}):
            for name in ("validation", "test"):
                held = subjects.set_index("participant_id").loc[sets[sets == name].index, "diagnosis"]
                assert set(held) == {"CN", "AD"}, (seed, name, list(held))
