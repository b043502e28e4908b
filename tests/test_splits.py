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
        dx = ["CN", "MCI", "AD", "DLB", "FTLD", "MS"][i % 6]
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
                rows = table[table.set == name]
                assert set(splits.task_labels(rows, task)) == set(splits.task_classes(task))
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


def test_sex_undersampling_is_redrawn_per_split():
    """004 study 4 "repeated both the undersampling and the data split for ten different random seeds"."""
    subjects = splits.subject_table(manifest(200), "CN_vs_AD", 5)
    sets = splits.make_splits(subjects, {**SETTINGS, "balance_sex": True, "n_splits": 4})
    kept = [frozenset(s.index) for s in sets]
    assert len(set(kept)) == 4  # each split drew its own balanced sample
    for k, s in enumerate(sets):
        assert set(s.index) == set(splits.balance_sex(subjects, SETTINGS["seed"] + k).participant_id)
        members = subjects.set_index("participant_id").loc[list(s.index)]
        counts = members.groupby(["diagnosis", "age_bin", "sex"]).size().unstack("sex").fillna(0)
        assert (counts["F"] == counts["M"]).all()
    # k-fold partitions one undersampled population
    folds = splits.make_splits(subjects, {**SETTINGS, "balance_sex": True, "method": "kfold", "n_splits": 3})
    assert len({frozenset(f.index) for f in folds}) == 1


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


def test_splits_are_drawn_from_the_scans_that_pass_qc(tmp_path):
    """QC-failed scans: a participant whose every session failed is in no set, one whose baseline failed is
    tested on its next session, a failed PET does not remove a T1w-only task's session; every set keeps
    every class."""
    m = manifest()
    m.to_csv(tmp_path / "manifest.tsv", sep="\t", index=False)
    scans = m.assign(participant_id=m.participant_id, session_id="ses-" + m.session_id, qc_pass=True)[
        ["participant_id", "session_id", "modality", "qc_pass"]]
    pet = scans.assign(modality="pet")
    fail = {("sub-002", "ses-01"), ("sub-007", "ses-01"), ("sub-007", "ses-02")}  # sub-007: 2 sessions, AD
    scans["qc_pass"] = [(p, s) not in fail for p, s in zip(scans.participant_id, scans.session_id)]
    pet["qc_pass"] = pet.participant_id != "sub-012"  # only its PET failed
    pd.concat([scans, pet]).to_csv(tmp_path / "scans.tsv", sep="\t", index=False)
    outs = [tmp_path / f"split-{k}.tsv" for k in range(3)]
    splits.run_splits(tmp_path / "manifest.tsv", "CN_vs_AD", {**SETTINGS, "n_splits": 3}, outs,
                      tmp_path / "scans.tsv", ["T1w"])
    for path in outs:
        table = pd.read_csv(path, sep="\t", dtype={"session_id": str})
        assert "sub-007" not in set(table.participant_id)
        rows = table[table.participant_id == "sub-002"]
        # sessions 02 and 03 stay; tested, it is tested on 02, its first session that passed
        assert list(rows.session_id) == (["02"] if (rows.set == "test").any() else ["02", "03"])
        assert "sub-012" in set(table.participant_id)
        for name in splits.SETS:
            assert set(table[table.set == name].diagnosis) == {"CN", "AD"}
    # a task trained on both modalities leaves sub-012 out too
    splits.run_splits(tmp_path / "manifest.tsv", "CN_vs_AD", {**SETTINGS, "n_splits": 3}, outs,
                      tmp_path / "scans.tsv", ["T1w", "pet"])
    assert "sub-012" not in set(pd.read_csv(outs[0], sep="\t").participant_id)


def test_a_task_without_one_of_its_classes_is_refused():
    m = manifest()
    with pytest.raises(splits.SplitError, match=r"task CN_vs_MS: no participant of class MS"):
        splits.subject_table(m[m.diagnosis != "MS"], "CN_vs_MS", 5)


def test_the_sex_task_is_stratified_by_sex_down_to_its_coarsest_level():
    """A small cohort whose diagnosis x sex strata are too small to split on: the sex task still has both
    sexes in every set (the diagnoses' fallback would not keep them)."""
    rows = [dict(participant_id=f"sub-{i:02d}", session_id="01", modality="T1w",
                 diagnosis=["CN", "AD", "MCI", "DLB"][i % 4], age=60 + 2 * i, sex="MF"[i < 6], mmse=25)
            for i in range(12)]
    subjects = splits.subject_table(pd.DataFrame(rows), "sex", 5)
    assert list(subjects["label"]) == ["F" if i < 6 else "M" for i in range(12)]
    for seed in range(5):
        for sets in splits.make_splits(subjects, {**SETTINGS, "seed": seed, "n_splits": 2, "test_fraction": 0.25,
                                                  "validation_fraction": 0.34}):
            table = splits.session_rows(subjects, sets)
            for name in splits.SETS:
                assert set(splits.task_labels(table[table.set == name], "sex")) == {"F", "M"}, (seed, name)
