# The dose stage's constants, paths, settings, checks and input functions (its rules: rules/dose.smk).
# ---- 002's dose branch: resampling, reconstruction, patches, quality regression ---------------
DOSE = f"{RESULTS}/dose"
DCFG = config["dose"]
DTRAIN = DCFG["training"]
DOSE_LEVELS = [float(v) for v in DCFG["levels"]]
DOSE_LABELS = {patches.level_label(v): v for v in DOSE_LEVELS}
FULL_LEVEL = patches.level_label(max(DOSE_LEVELS))


def _dose_patients():
    """(subject, session) of the patients in the dose branch, and the scores table (braindl.planning.dose_patients)."""
    try:
        plan = planning.dose_patients(config, _SELECTION)
    except ValueError as err:
        raise WorkflowError(f"config: {err}") from None
    for note in plan.notes:
        print(note, file=sys.stderr)
    return plan.pairs, plan.scores


DOSE_PAIRS, DOSE_SCORE_TABLE = _dose_patients()
# the quality regression needs labels: the synthetic rule's, or a scores table
DOSE_REGRESSION = bool(DTRAIN["models"] and DOSE_PAIRS and (SYNTHETIC or DOSE_SCORE_TABLE is not None))


def dose_scored():
    """(subject, session, level label) of every scored reconstruction: the scores table's rows, or
    (synthetic) one level per quality group and patient, drawn by patches.scored_levels."""
    if DOSE_SCORE_TABLE is not None:
        return [(p[4:], s, patches.level_label(v)) for p, s, v in
                DOSE_SCORE_TABLE[["participant_id", "session_id", "level"]].itertuples(index=False)]
    return [(sub, ses, patches.level_label(v)) for sub, ses in DOSE_PAIRS
            for v in patches.scored_levels(f"sub-{sub}", DOSE_LEVELS, DCFG["groups"], DCFG["seed"])]


def _check_dose():
    if not DOSE_REGRESSION:
        return
    for problem in planning.dose_training_problems(len(DOSE_PAIRS), DTRAIN):
        raise WorkflowError(f"config: dose.training: {problem}")
    for problem in planning.dose_model_problems(DTRAIN):
        raise WorkflowError(f"config: {problem}")


_check_dose()


def dose_counts_paths(subject="{subject}", session="{session}"):
    return derivatives.dose_counts(RESULTS, subject, session)


def dose_recon_paths(subject="{subject}", session="{session}", level="{level}"):
    return derivatives.dose_reconstruction(RESULTS, subject, session, level)


def dose_patch_paths(subject="{subject}", session="{session}", level="{level}"):
    return derivatives.dose_patches(RESULTS, subject, session, level)


def dose_source(wc):
    """The events file of a scan (dose.events_dir), else its PET image."""
    if DCFG["events_dir"]:
        return f"{DCFG['events_dir']}/sub-{wc.subject}_ses-{wc.session}_events.npy"
    return RAW[(wc.subject, wc.session, "pet")]


DOSE_SCORES = derivatives.dose_scores(RESULTS)
try:
    DOSE_FOLDS = patches.quality_folds([f"sub-{s}" for s, _ in DOSE_PAIRS], DTRAIN["test_patients"],
                                       DTRAIN["validation_patients"], DTRAIN["folds"], DCFG["seed"]) \
        if DOSE_REGRESSION else []
except patches.DoseError as _err:
    raise WorkflowError(f"config: {_err}") from None


def dose_run_paths(model="{dmodel}", freeze="{freeze}", n="{n}", fold="{fold}", run="{run}"):
    return derivatives.dose_run(RESULTS, model, freeze, n, fold, run)


def dose_runs():
    """Every quality run (braindl.planning.dose_runs)."""
    return planning.dose_runs(DTRAIN, DOSE_REGRESSION)


def dose_train_settings(wc):
    return canonical(planning.dose_train_settings(DCFG, wc.dmodel, wc.freeze, config["training"]["device"]))


# dose_train jobs: resources.training_job_runs (TRAIN_JOB_RUNS), over a backbone and regime's runs
DOSE_JOB_LABEL = planning.dose_job_label(TRAIN_JOB_RUNS)


def dose_job_runs(wc=None):
    """The (size, fold, run) of one dose_train job (braindl.planning.dose_job_runs): without ``wc`` the
    wildcard patterns of its outputs, with a job's wildcards the runs it trains."""
    given = {k: getattr(wc, k) for k in ("n", "fold", "run") if wc is not None and hasattr(wc, k)}
    return planning.dose_job_runs(DTRAIN, TRAIN_JOB_RUNS, **given)


def dose_job_outputs():
    """Named lists of the files of one dose_train job's runs (its outputs' patterns)."""
    per_run = [dose_run_paths(n=n, fold=f, run=r) for n, f, r in dose_job_runs()]
    return {k: [files[k] for files in per_run] for k in per_run[0]}


def dose_job_params(wc):
    """The runs of one dose_train job, each with its fold's patients (braindl.quality.train_quality_runs)."""
    return [{"n": int(n), "fold": DOSE_FOLDS[int(f)], "run": int(r)} for n, f, r in dose_job_runs(wc)]


def dose_patch_inputs(wc):
    """Patches of the scored reconstructions of the training (first n of the fold's pool), validation and
    test patients of every run of the job, keyed by (participant_id, session_id, level)."""
    members = set()
    for n, f, _ in dose_job_runs(wc):
        fold = DOSE_FOLDS[int(f)]
        members |= set(fold["pool"][: int(n)] + fold["validation"] + fold["test"])
    return {(f"sub-{s}", t, DOSE_LABELS[lv]): dose_patch_paths(s, t, lv)["patches"] for s, t, lv in dose_scored()
            if f"sub-{s}" in members}


def dose_seed(*parts):
    """A seed of its own per scan (and level), from dose.seed."""
    return planning.dose_seed(DCFG["seed"], *parts)


DOSE_TABLE = derivatives.dose_table(RESULTS)


def dose_figure(kind):
    return derivatives.dose_figure(RESULTS, kind, config["figures"]["format"])


def dose_targets():
    if not DOSE_PAIRS:
        return []
    sub, ses = DOSE_PAIRS[0]
    files = [dose_figure("levels")]
    files += [dose_recon_paths(s, t, lv)["pet"] for s, t in DOSE_PAIRS for lv in DOSE_LABELS]
    if DOSE_REGRESSION:
        files += [DOSE_TABLE, dose_figure("training_size"), dose_figure("freezing")]
    return files
