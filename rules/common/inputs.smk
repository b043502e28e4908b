# The inputs stage's constants, paths, settings, checks and input functions (its rules: rules/inputs.smk).
def _check_inputs_input(wildcards):
    """The dataset's tables and the selected images that exist (the job names every problem, missing
    files included)."""
    images = list(RAW.values())
    if SYNTHETIC:
        return {"images": images, "participants": f"{BIDS_DIR}/participants.tsv",
                "sessions": [f for f in COHORT_FILES if f.endswith("_sessions.tsv")]}
    tables = [Path(BIDS_DIR, "participants.tsv")]
    tables += [Path(BIDS_DIR, p, f"{p}_sessions.tsv") for p in sorted(set(SCANS["participant_id"]))]
    return {"images": images, "tables": [str(t) for t in tables if t.is_file()]}


def session_scans_path(subject="{subject}", session="{session}"):
    """The scans of one session the workflow uses (rule session_scans)."""
    return derivatives.session_scans(RESULTS, subject, session)


def modality_sessions_path(mod="{mod}"):
    """The sessions with a scan of ``mod`` and the digest of their data (rule modality_sessions)."""
    return derivatives.modality_sessions(RESULTS, mod)


_ROWS_OF_SESSION, _ROWS_OF_MOD = {}, {}
for _row in SCANS[["participant_id", "session_id", "modality", "path"]].itertuples(index=False):
    # grouped once: the list jobs' params ask per session and per modality
    _ROWS_OF_SESSION.setdefault((_row[0][4:], _row[1]), []).append(list(_row))
    _ROWS_OF_MOD.setdefault(_row[2], []).append(list(_row))


def scan_rows(subject=None, session=None, mod=None):
    """[participant_id, session_id, modality, path] of the selected scans of one session, or of one
    modality."""
    if subject is not None:
        return _ROWS_OF_SESSION.get((subject, session), [])
    return _ROWS_OF_MOD.get(mod, [])


def mod_sessions(mod):
    """(subject, session) of the sessions that have a scan of ``mod``."""
    return [k for k, mods in SESSION_MODS.items() if mod in mods]


@functools.lru_cache(maxsize=None)
def data_digest(mods):
    """Digest of the scans of ``mods`` (participant, session, modality, path) and of the clinical tables:
    a param of modality_sessions, whose list the gathering rules (QC table, splits, packs) read, so that
    a new session, a dropped scan or an edited diagnosis reruns them."""
    digest = inputs.scans_digest(SCANS, list(mods), None if SYNTHETIC else BIDS_DIR)
    if SYNTHETIC:
        cohort = COHORT.to_csv(sep="\t", index=False)
        digest = f"{digest}-{inputs.text_digest(cohort)}"
    return digest
