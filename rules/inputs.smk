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


include: "common/inputs.smk"


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
    # one core (profiles may set more): with two, an external dataset's check waited on a 2-core machine
    # until every other job had ended, and its preprocessing then ran alone at the end of the run
    threads: 1
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
