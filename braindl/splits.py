"""Subject-level train / validation / test splits (PROTOCOLS.md section 2).

A participant's sessions always go to one set; test sets keep only each
participant's baseline session. Splits are stratified on diagnosis, sex and age
bin; strata too small to split, or more strata than a small holdout has places,
fall back to diagnosis x sex, then diagnosis.
Optionally sex is balanced first by undersampling within diagnosis x age bin
(004 study 4).

Two methods:

* ``repeated_holdout``: ``n_splits`` random stratified splits, seeds
  ``seed + k`` (004 study 4: 10 random splits);
* ``kfold``: stratified K-fold over participants, fold k is the test set
  (000: K-fold on the training part).

In both, the validation set is a stratified share of the non-test participants.

Tasks (``TASKS``) name the diagnoses they use; ``MMSE`` is a regression on the
in-distribution diagnoses with MMSE >= 15 (001); ``sex`` classifies female against
male participants of those diagnoses (004 study 5's third task, there on UK Biobank);
``CN_vs_MS`` is 004 study 2's task.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from braindl.io import write_tsv

TASKS = {
    "CN_vs_AD": ["CN", "AD"],
    "CN_AD_DLB": ["CN", "AD", "DLB"],
    "CN_MCI_AD_DLB": ["CN", "MCI", "AD", "DLB"],
    "MMSE": ["CN", "MCI", "AD", "DLB"],
    "CN_vs_MS": ["CN", "MS"],
    "sex": ["CN", "MCI", "AD", "DLB"],
}
REGRESSION = {"MMSE": "mmse"}
#: tasks whose classes are another column than the diagnosis: column and classes in output order
LABELLED = {"sex": ("sex", ["F", "M"])}
#: spellings of sex in participants.tsv (BIDS recommends M/F; male/female and m/f occur)
SEX_CODES = {"f": "F", "female": "F", "w": "F", "woman": "F", "m": "M", "male": "M", "man": "M"}
MMSE_MIN = 15
SETS = ("train", "validation", "test")


class SplitError(ValueError):
    """A split that would leak participants between sets, or cannot be made."""


def is_regression(task: str) -> bool:
    return task in REGRESSION


def task_classes(task: str) -> list[str]:
    """Class labels of a classification task, in output order (empty for regression)."""
    if task not in TASKS:
        raise SplitError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    if task in LABELLED:
        return list(LABELLED[task][1])
    return [] if is_regression(task) else list(TASKS[task])


def sex_code(value) -> str | None:
    """``F``/``M`` for the usual spellings of a participant's sex, None for anything else."""
    return SEX_CODES.get(str(value).strip().lower())


def task_labels(rows: pd.DataFrame, task: str) -> pd.Series:
    """The class of each row for a classification ``task`` (None where it has none): the diagnosis,
    or the column of a :data:`LABELLED` task (sex, in its usual spellings)."""
    classes = task_classes(task)
    if task == "sex":
        return rows["sex"].map(sex_code)
    return rows["diagnosis"].where(rows["diagnosis"].isin(classes), None)


def subject_table(manifest: pd.DataFrame, task: str, age_bin_years: float) -> pd.DataFrame:
    """One row per participant eligible for ``task``: diagnosis, sex, baseline age, age bin, sessions."""
    task_classes(task)  # refuses an unknown task
    classes = TASKS[task]
    m = manifest.copy()
    m["session_id"] = m["session_id"].astype(str)
    m = m[m["diagnosis"].isin(classes)]
    if task == "MMSE":
        m = m[pd.to_numeric(m["mmse"], errors="coerce") >= MMSE_MIN]
    if task in LABELLED:  # participants without a class of the task (e.g. sex not given) take no part
        m = m[task_labels(m, task).notna()]
    rows = []
    for pid, grp in m.groupby("participant_id", sort=True):
        first = grp.sort_values("session_id").iloc[0]
        age = float(first["age"])
        rows.append(dict(participant_id=pid, diagnosis=first["diagnosis"], sex=str(first["sex"]), age=age,
                         age_bin=int(age // age_bin_years), sessions=sorted(grp["session_id"].unique()),
                         baseline=sorted(grp["session_id"].unique())[0]))
    table = pd.DataFrame(rows, columns=["participant_id", "diagnosis", "sex", "age", "age_bin", "sessions", "baseline"])
    if task in LABELLED:  # the class the splits stratify on first
        table = table.assign(label=task_labels(table, task))
    if not is_regression(task):
        missing = [c for c in task_classes(task) if not (task_labels(table, task) == c).any()]
        if missing:
            raise SplitError(f"task {task}: no participant of class {', '.join(missing)} (of {task_classes(task)}) "
                             "among the sessions that passed QC")
    return table


def balance_sex(subjects: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Undersample the majority sex within each diagnosis x age bin to equal counts."""
    rng = np.random.default_rng(seed)
    keep = []
    for _, grp in subjects.groupby(["diagnosis", "age_bin"], sort=True):
        by_sex = {s: g for s, g in grp.groupby("sex", sort=True)}
        if len(by_sex) < 2:
            continue  # one sex only: nothing to balance against
        n = min(len(g) for g in by_sex.values())
        for g in by_sex.values():
            keep.extend(rng.choice(g.index.to_numpy(), size=n, replace=False).tolist())
    return subjects.loc[sorted(keep)].reset_index(drop=True)


_LEVELS = (("diagnosis", "sex", "age_bin"), ("diagnosis", "sex"), ("diagnosis",))
#: a task whose classes are another column (its ``label``, e.g. sex) keeps that column down to the coarsest level
_LABEL_LEVELS = (("label", "diagnosis", "age_bin"), ("label", "diagnosis"), ("label",))


def _label(subjects: pd.DataFrame, cols) -> pd.Series:
    return subjects[list(cols)].astype(str).agg("|".join, axis=1)


def _finest(subjects: pd.DataFrame, min_count: int, max_strata: int | None = None):
    """Finest stratification label (dx x sex x age bin, dx x sex, dx) whose strata all have
    ``min_count`` members and, with ``max_strata``, number no more than that; None if none."""
    for cols in _LABEL_LEVELS if "label" in subjects.columns else _LEVELS:
        label = _label(subjects, cols)
        counts = label.value_counts()
        if counts.min() >= min_count and (max_strata is None or len(counts) <= max_strata):
            return label
    return None


def strata(subjects: pd.DataFrame, min_count: int) -> pd.Series:
    """Finest stratification label (dx x sex x age bin, dx x sex, dx) whose strata all have min_count members."""
    label = _finest(subjects, min_count)
    coarsest = "label" if "label" in subjects.columns else "diagnosis"
    return subjects[coarsest].astype(str) if label is None else label


def _holdout(subjects: pd.DataFrame, fraction: float, seed: int, min_count: int = 2):
    """Stratified holdout of ``fraction`` of ``subjects``' participants: on the finest label
    (dx x sex x age bin, dx x sex, dx) whose strata all have ``min_count`` (>= 2) members
    and number no more than either side holds, so that a small holdout still gets every
    diagnosis; random when not even the diagnosis can stratify it."""
    ids = subjects["participant_id"].to_numpy()
    n_hold = max(1, int(round(fraction * len(ids))))
    label = _finest(subjects, max(2, min_count), min(n_hold, len(ids) - n_hold))
    stratify = None if label is None else label.to_numpy()
    from sklearn.model_selection import train_test_split  # here: the workflow's parse imports this module

    rest, hold = train_test_split(ids, test_size=n_hold, random_state=seed, stratify=stratify)
    return np.sort(rest), np.sort(hold)


def _assign(subjects: pd.DataFrame, test_ids, val_ids) -> pd.DataFrame:
    sets = pd.Series("train", index=subjects["participant_id"])
    sets[list(test_ids)] = "test"
    sets[list(val_ids)] = "validation"
    return sets


def make_splits(subjects: pd.DataFrame, settings: dict) -> list[pd.Series]:
    """Participant -> set (train/validation/test) for each split, as Series indexed by participant.

    With ``balance_sex``, repeated holdout redraws the undersampling for every split (seed + k), as
    004 study 4 "repeated both the undersampling and the data split for ten different random
    seeds"; k-fold undersamples once (its folds partition one population). A participant left out
    of a split's undersampling has no set in it."""
    method = settings["method"]
    seed = int(settings["seed"])
    balance = bool(settings.get("balance_sex"))
    if len(balance_sex(subjects, seed) if balance else subjects) < 6:
        raise SplitError(f"{len(subjects)} participants are too few for train/validation/test splits")
    out = []
    if method == "repeated_holdout":
        for k in range(int(settings["n_splits"])):
            drawn = balance_sex(subjects, seed + k) if balance else subjects
            rest, test = _holdout(drawn, float(settings["test_fraction"]), seed + k, min_count=3)
            rest_subjects = drawn.set_index("participant_id").loc[rest].reset_index()
            train, val = _holdout(rest_subjects, float(settings["validation_fraction"]), seed + k)
            out.append(_assign(drawn, test, val))
        return out
    if balance:
        subjects = balance_sex(subjects, seed)
    ids = subjects["participant_id"].to_numpy()
    if method == "kfold":
        n = int(settings["n_splits"])
        if n < 2:
            raise SplitError("splits.method kfold needs n_splits >= 2")
        lab = strata(subjects, n)
        if lab.value_counts().min() < n:
            raise SplitError(f"kfold with {n} folds: a diagnosis has fewer than {n} participants")
        from sklearn.model_selection import StratifiedKFold  # here: the workflow's parse imports this module

        folds = StratifiedKFold(n_splits=n, shuffle=True, random_state=seed)
        for rest_idx, test_idx in folds.split(ids, lab):
            train, val = _holdout(subjects.iloc[rest_idx].reset_index(drop=True),
                                  float(settings["validation_fraction"]), seed)
            out.append(_assign(subjects, ids[test_idx], val))
    else:
        raise SplitError(f"unknown splits.method {method!r}")
    return out


def session_rows(subjects: pd.DataFrame, sets: pd.Series) -> pd.DataFrame:
    """Session-level split table: every session for train/validation, the baseline only for test."""
    rows = []
    for s in subjects.itertuples():
        if s.participant_id not in sets.index:
            continue  # left out by sex balancing
        which = sets[s.participant_id]
        for ses in ([s.baseline] if which == "test" else s.sessions):
            rows.append(dict(participant_id=s.participant_id, session_id=ses, set=which, diagnosis=s.diagnosis,
                             sex=s.sex, age=s.age, age_bin=s.age_bin))
    return pd.DataFrame(rows)


def check_disjoint(table: pd.DataFrame, source="split") -> None:
    """Refuse a split table in which a participant appears in more than one set."""
    unknown = sorted(set(table["set"]) - set(SETS))
    if unknown:
        raise SplitError(f"{source}: unknown set name(s) {unknown}; use {list(SETS)}")
    sets_per = table.groupby("participant_id")["set"].nunique()
    leaked = sets_per[sets_per > 1].index.tolist()
    if leaked:
        detail = ", ".join(f"{p} ({'/'.join(sorted(set(table.loc[table.participant_id == p, 'set'])))})"
                           for p in leaked[:10])
        raise SplitError(f"{source}: {len(leaked)} participant(s) in more than one set: {detail}")
    for name in SETS:
        if not (table["set"] == name).any():
            raise SplitError(f"{source}: the {name} set is empty")


def read_split(path) -> pd.DataFrame:
    """Read and check a split TSV (also a user-made one)."""
    table = pd.read_csv(path, sep="\t", dtype={"participant_id": str, "session_id": str})
    missing = {"participant_id", "session_id", "set"} - set(table.columns)
    if missing:
        raise SplitError(f"{path}: missing column(s) {sorted(missing)}")
    check_disjoint(table, source=str(path))
    return table


def run_splits(manifest_tsv, task: str, settings: dict, out_tsvs: list, qc_scans=None, modalities=()) -> None:
    """Write one session-level split TSV per split of ``task``.

    ``qc_scans``: the QC stage's per-scan decisions (:func:`braindl.qc.scan_table`);
    the splits are made from the sessions whose scans of ``modalities`` (the
    modalities the task is trained on) passed, so that every test set keeps its
    stratification after QC, and is the same in every registration variant.
    """
    manifest = pd.read_csv(manifest_tsv, sep="\t", dtype={"participant_id": str, "session_id": str})
    if qc_scans is not None and len(modalities):
        from braindl.qc import passing_sessions, prefixed_ids

        scans = pd.read_csv(qc_scans, sep="\t", dtype={"participant_id": str, "session_id": str})
        keep = passing_sessions(scans, modalities)
        ids = prefixed_ids(manifest)
        manifest = manifest[[k in keep for k in zip(ids.participant_id, ids.session_id)]]
    subjects = subject_table(manifest, task, float(settings["age_bin_years"]))
    split_sets = make_splits(subjects, settings)
    if len(split_sets) != len(out_tsvs):
        raise SplitError(f"made {len(split_sets)} splits for {len(out_tsvs)} output files")
    for sets, path in zip(split_sets, out_tsvs):
        table = session_rows(subjects, sets)
        check_disjoint(table, source=str(path))
        write_tsv(Path(path), table)
