# Shared names, the subject/session list and path helpers (parse time: no image is read).
from pathlib import Path

import pandas as pd

from braindl import inputs, synthetic
from braindl.provenance import code_hash

RESULTS = config["results_dir"]
MODALITIES = config["dataset"]["modalities"]
SYNTHETIC = config["dataset"]["bids_dir"] is None
ENV = "../envs/braindl.yaml"
TRUTH_DIR = f"{RESULTS}/synthetic/groundtruth"

if SYNTHETIC:
    _unknown = sorted(set(config["synthetic"]["groups"]) - set(config["dataset"]["diagnoses"]))
    if _unknown:
        raise WorkflowError(
            f"config: synthetic.groups has diagnoses {_unknown} missing from dataset.diagnoses"
        )
    BIDS_DIR = f"{RESULTS}/synthetic/bids"
    COHORT = synthetic.cohort_table(config["synthetic"])
    SESSIONS = pd.DataFrame(
        [
            dict(subject=row.participant_id[4:], session=ses, diagnosis=row.diagnosis)
            for row in COHORT.itertuples()
            for ses in synthetic.session_labels(row.n_sessions)
        ]
    )
    SUBJECTS_BY_NSESSIONS = {
        int(n): sorted(p[4:] for p in grp.participant_id)
        for n, grp in COHORT.groupby("n_sessions")
    }
    IMAGES = [
        str(synthetic.raw_paths(BIDS_DIR, r.subject, r.session)[m])
        for r in SESSIONS.itertuples()
        for m in MODALITIES
    ]
else:
    BIDS_DIR = config["dataset"]["bids_dir"]
    SUBJECTS_BY_NSESSIONS = {}
    _files = inputs.discover(BIDS_DIR, MODALITIES)
    SESSIONS = (
        _files.assign(subject=_files.participant_id.str[4:], session=_files.session_id)[
            ["subject", "session"]
        ]
        .drop_duplicates()
        .reset_index(drop=True)
    )
    IMAGES = list(_files.path)

MANIFEST = f"{RESULTS}/inputs/manifest.tsv"
SYN = f"{RESULTS}/synthetic"


def _subject_outputs(n_sessions):
    """Output patterns (wildcard ``subject``) of all sessions of one subject."""
    outs = {}
    for ses in synthetic.session_labels(n_sessions):
        paths = {
            **synthetic.truth_paths(TRUTH_DIR, "{subject}", ses),
            **synthetic.raw_paths(BIDS_DIR, "{subject}", ses),
        }
        outs.update({f"{k}_{ses}": str(v) for k, v in paths.items()})
    return outs


def _diagnosis_of(wildcards):
    return SESSIONS.loc[SESSIONS.subject == wildcards.subject, "diagnosis"].iloc[0]


def _check_inputs_input(wildcards):
    files = {"images": IMAGES, "participants": f"{BIDS_DIR}/participants.tsv"}
    if SYNTHETIC:
        files["sessions"] = rules.synthetic_metadata.output.sessions
    return files
