# The synthetic stage's constants, paths, settings, checks and input functions (its rules: rules/synthetic.smk).
SYN = f"{RESULTS}/synthetic"


def _cohort_files():
    """Every image, sidecar and ground-truth file of the synthetic cohort's sessions, and its sessions tables."""
    files = []
    diagnosis = dict(zip(COHORT.participant_id, COHORT.diagnosis))
    for sub, ses in session_pairs():
        files += [str(p) for p in synthetic.session_truth_files(config["synthetic"], TRUTH_DIR, sub, ses,
                                                                diagnosis[f"sub-{sub}"])]
        files += [str(p) for p in synthetic.raw_paths(BIDS_DIR, sub, ses).values()]
    files += [f"{BIDS_DIR}/sub-{sub}/sub-{sub}_sessions.tsv" for sub in sorted({s for s, _ in session_pairs()})]
    return files


COHORT_FILES = _cohort_files()
