# 001's two-stage transfer sweep (braindl.pretraining): a model of transfer.models is
# pre-trained on pretraining.source_task with a fraction of each split's training
# participants, fine-tuned on pretraining.target_task, and compared with the same
# model fine-tuned without pre-training.


include: "common/pretraining.smk"


if PRE["model"]:

    rule sweep_split:
        input:
            split=lambda wc: split_path(wc.split, PRE["source_task"]),
        output:
            sweep_split_path(),
        params:
            fraction=lambda wc: int(wc.size) / 100,
            seed=lambda wc: config["splits"]["seed"] + int(wc.split),
            code=script_code("sweep_split.py"),
        log:
            f"{PRETRAIN}/logs/size-{{size}}_split-{{split}}.log",
        priority: TRAIN_PRIORITY
        conda:
            ENV
        script:
            "../workflow_scripts/sweep_split.py"


    rule pretrain:
        input:
            unpack(lambda wc: {**arm_data(PRE["model"]),
                               **over_train_runs(lambda s, r: {"split": sweep_split_path(wc.size, s)}, wc)}),
        output:
            **over_train_runs(lambda s, r: sweep_run_paths("pretrain", "{size}", s, r)),
        params:
            settings=lambda wc: arm_settings(PRE["model"]),
            task=PRE["source_task"],
            runs=train_job_numbers,
            code=script_code("train.py"),
        log:
            f"{PRETRAIN}/logs/pretrain_size-{{size}}{TRAIN_JOB_LABEL}.log",
        threads: TRAIN_THREADS
        priority: TRAIN_PRIORITY
        conda:
            ENV
        resources:
            **TRAIN_RESOURCES,
        script:
            "../workflow_scripts/train.py"


    rule finetune:
        input:
            unpack(lambda wc: {**arm_data(PRE["model"]), **over_train_runs(
                lambda s, r: {"split": split_path(s, PRE["target_task"]),
                              **({} if wc.source == "none" else {"finetune": sweep_pretrained(wc.source, s, r)})},
                wc)}),
        output:
            **over_train_runs(lambda s, r: sweep_run_paths("finetune", "{source}", s, r)),
        params:
            settings=lambda wc: _finetune_settings(),
            task=PRE["target_task"],
            runs=train_job_numbers,
            code=script_code("train.py"),
        log:
            f"{PRETRAIN}/logs/finetune_from-{{source}}{TRAIN_JOB_LABEL}.log",
        threads: TRAIN_THREADS
        priority: TRAIN_PRIORITY
        conda:
            ENV
        resources:
            **TRAIN_RESOURCES,
        script:
            "../workflow_scripts/train.py"


    rule sweep_table:
        input:
            runs=[p[k] for p in _sweep_runs() for k in ("predictions", "summary")],
            splits=[sweep_pretrain_split(z, s) for z in SIZES for s in SPLIT_IDS],
        output:
            captioned(sweep_targets()[0], "sweep", "Pre-training sweep"),
        params:
            runs=_sweep_runs(),
            code=script_code("sweep_table.py"),
        log:
            f"{PRETRAIN}/logs/sweep_table.log",
        conda:
            ENV
        script:
            "../workflow_scripts/sweep_table.py"


    rule sweep_figure:
        input:
            sweep_targets()[0],
        output:
            captioned(sweep_targets()[1], "sweep", "Pre-training sweep"),
        params:
            style=canonical(config["figures"]),
            code=script_code("sweep_figure.py"),
        log:
            f"{FIGURES}/logs/pretraining_sweep.log",
        conda:
            ENV
        script:
            "../workflow_scripts/sweep_figure.py"
