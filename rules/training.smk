# Splits, packing, training per (task, modality, variant, split, run), evaluation
# and the registration-comparison figures (braindl.splits, .pack, .training,
# .evaluation, .figures). A training job trains the runs of its unit that
# resources.training_job_runs gives it: all of them (the default), a split's, or one;
# so do train_model, pretrain, finetune and ms_train.


include: "common/training.smk"


rule splits:
    input:
        manifest=ancient(MANIFEST),
        qc=QC_SCANS,
        # the sessions and clinical values of the task's modalities: a new session reruns the splits
        lists=lambda wc: [modality_sessions_path(m) for m in (split_modalities(wc.task) or MODALITIES)],
    output:
        [split_path(k) for k in SPLIT_IDS],
    params:
        settings=split_settings(),
        modalities=lambda wc: split_modalities(wc.task),
        code=script_code("splits.py"),
    log:
        f"{SPLITS}/logs/task-{{task}}.log",
    priority: TRAIN_PRIORITY
    conda:
        ENV
    script:
        "../workflow_scripts/splits.py"


rule pack:
    input:
        volumes=lambda wc: [crop_paths(session_mods(sub, ses), wc.reg, sub, ses)[wc.mod] for sub, ses in mod_sessions(wc.mod)],
        qc=lambda wc: qc_table(wc.reg),
        manifest=ancient(MANIFEST),
        listed=modality_sessions_path(),
    output:
        **pack_paths(),
    params:
        sessions=lambda wc: mod_sessions(wc.mod),
        dtype=config["training"]["pack_dtype"],
        code=script_code("pack.py"),
    log:
        f"{PACK}/logs/desc-{{reg}}_{{mod}}.log",
    priority: TRAIN_PRIORITY
    conda:
        ENV
    resources:
        mem_mb=2000,
    script:
        "../workflow_scripts/pack.py"


rule train:
    input:
        unpack(train_inputs),
    output:
        **over_train_runs(lambda s, r: train_paths(split=s, run=r)),
    params:
        settings=training_settings(),
        runs=train_job_numbers,
        code=script_code("train.py"),
    log:
        f"{TRAIN}/logs/task-{{task}}_{{mod}}_desc-{{reg}}{TRAIN_JOB_LABEL}.log",
    threads: TRAIN_THREADS
    priority: TRAIN_PRIORITY
    conda:
        ENV
    resources:
        **TRAIN_RESOURCES,
    script:
        "../workflow_scripts/train.py"


rule evaluate:
    input:
        runs=lambda wc: [train_paths(wc.task, wc.mod, v, s, r)[k] for v in VARIANTS for s in SPLIT_IDS
                         for r in RUN_IDS for k in ("predictions", "summary")],
    output:
        **{k: captioned(v, "evaluation", "Registration comparison", "{task} {mod}") for k, v in evaluation_paths().items()},
    params:
        runs=lambda wc: [dict(variant=v, split=s, run=r, modality=wc.mod, **train_paths(wc.task, wc.mod, v, s, r))
                         for v in VARIANTS for s in SPLIT_IDS for r in RUN_IDS],
        n_boot=config["evaluation"]["bootstrap"],
        ci=config["evaluation"]["ci"],
        code=script_code("evaluate.py"),
    log:
        f"{EVAL}/logs/task-{{task}}_{{mod}}.log",
    conda:
        ENV
    script:
        "../workflow_scripts/evaluate.py"


for _fig in ("variants", "roc", "splits"):

    rule:
        name:
            f"figure_{_fig}"
        input:
            **evaluation_paths(),
            predictions=lambda wc: [train_paths(wc.task, wc.mod, v, s, r)["predictions"] for v in VARIANTS
                                    for s in SPLIT_IDS for r in RUN_IDS],
        output:
            captioned(figure_path(_fig), _fig, "Registration comparison", "{task} {mod}"),
        params:
            kind=_fig,
            variants=VARIANTS,
            style=canonical(config["figures"]),
            code=script_code("figure.py"),
        log:
            f"{FIGURES}/logs/task-{{task}}_{{mod}}_{_fig}.log",
        conda:
            ENV
        script:
            "../workflow_scripts/figure.py"
