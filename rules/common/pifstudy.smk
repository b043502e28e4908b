# Study 5's plan, paths and input functions (its rules: rules/pifstudy.smk).
# ---- plan ------------------------------------------------------------------------------------------
PIF_PLAN = pifstudy.study_plan(PIF, len(SPLIT_IDS)) if PIF["tasks"] else None
PIF_RUNS = pifstudy.planned_runs(RESULTS, PIF, PIF_PLAN) if PIF["tasks"] else []
# what tells one search job's log from another's of its task, family and size (resources.training_job_runs)
PIF_JOB_LABEL = "" if TRAIN_JOB_RUNS == "unit" else "_split-{split}"


def pif_job_splits(wc=None):
    """The splits one search job trains: without ``wc`` its outputs' (a wildcard, or every split), with a
    job's wildcards its own (braindl.pifstudy.job_splits)."""
    return pifstudy.job_splits(TRAIN_JOB_RUNS, SPLIT_IDS, *([wc.split] if wc is not None and hasattr(wc, "split") else []))


def pif_split_table(task, size, split):
    """The split table a search trains on: the task's, or its subset of the training participants."""
    return split_path(split, task) if size == "100" else pifstudy.subset_path(RESULTS, task, size, split)
