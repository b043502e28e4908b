# Input contract: every selected image and table is read and checked before any expensive
# rule runs (braindl.inputs). All later stages take the manifest as input; the skipped
# table lists every image file of the dataset left out, and why (filters, runs, participant
# lists, PET without its session's T1w).
#
# The manifest is `ancient` below it, so that a new session does not rerun the others. Snakemake
# (9.27) does not look at the jobs behind an ancient input of a job that reruns: a new session's
# extraction, or a pack whose params changed, would wait for a second invocation. So the rules
# that must notice a new session or an edited table also read small lists written from the
# parse-time selection by jobs that do not wait for the check: one per session (extraction,
# dose) and one per modality (QC table, splits, packs).

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


rule check_inputs:
    input:
        unpack(_check_inputs_input),
    output:
        manifest=MANIFEST,
        skipped=f"{RESULTS}/inputs/skipped.tsv",
    params:
        bids_dir=BIDS_DIR,
        settings=canonical({k: v for k, v in DATASET.items() if k not in ("bids_dir", "out_of_distribution")}),
        pet_route=PET_ROUTE,
        code=script_code("check_inputs.py"),
    log:
        f"{RESULTS}/inputs/logs/check_inputs.log",
    threads: 2
    conda:
        ENV
    script:
        "../workflow_scripts/check_inputs.py"


rule session_scans:
    output:
        session_scans_path(),
    params:
        scans=lambda wc: scan_rows(wc.subject, wc.session),
    log:
        f"{RESULTS}/inputs/logs/sub-{{subject}}_ses-{{session}}_scans.log",
    localrule: True
    conda:
        ENV
    # a script, not `run:`: Snakemake runs a `run:` job in a new process that parses the whole workflow
    # again (about 5 s a session); no code hash: these lists stand at the top of every session's chain
    script:
        "../workflow_scripts/scan_list.py"


rule modality_sessions:
    output:
        modality_sessions_path(),
    params:
        scans=lambda wc: scan_rows(mod=wc.mod),
        data=lambda wc: data_digest((wc.mod,)),
    log:
        f"{RESULTS}/inputs/logs/desc-{{mod}}_sessions.log",
    localrule: True
    conda:
        ENV
    script:
        "../workflow_scripts/scan_list.py"
