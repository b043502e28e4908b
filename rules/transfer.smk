# Mosaics (braindl.mosaic) and 000's comparison of a custom 3D CNN with 2D models on
# mosaics (braindl.backbones, braindl.training, braindl.transfer), per task.


include: "common/transfer.smk"


rule mosaic:
    input:
        volumes=lambda wc: pack_paths(wc.reg, wc.mod)["volumes"],
        index=lambda wc: pack_paths(wc.reg, wc.mod)["index"],
    output:
        **mosaic_paths(),
    params:
        layout=lambda wc: canonical(LAYOUTS[wc.layout]),
        scale=config["mosaic"]["scale"],
        code=script_code("mosaic.py"),
    log:
        f"{MOSAIC}/logs/desc-{{reg}}_{{mod}}_layout-{{layout}}.log",
    priority: TRAIN_PRIORITY
    conda:
        ENV
    resources:
        mem_mb=2000,
    script:
        "../workflow_scripts/mosaic.py"


rule train_model:
    input:
        unpack(arm_inputs),
    output:
        **over_train_runs(lambda s, r: arm_paths(split=s, run=r)),
    params:
        settings=lambda wc: arm_settings(wc.arm),
        runs=train_job_numbers,
        code=script_code("train.py"),
    log:
        f"{TRANSFER}/logs/task-{{task}}_model-{{arm}}{TRAIN_JOB_LABEL}.log",
    threads: TRAIN_THREADS
    priority: TRAIN_PRIORITY
    conda:
        ENV
    resources:
        **TRAIN_RESOURCES,
    script:
        "../workflow_scripts/train.py"


rule transfer_table:
    input:
        runs=[arm_paths(t, a, s, r)[k] for t in XFER["tasks"] for a in ARMS for s in SPLIT_IDS for r in RUN_IDS
              for k in ("predictions", "summary")],
    output:
        captioned(transfer_table(), "transfer_table", "Transfer experiment"),
    params:
        runs=[dict(task=t, arm=a, split=s, run=r, **arm_paths(t, a, s, r)) for t in XFER["tasks"] for a in ARMS
              for s in SPLIT_IDS for r in RUN_IDS],
        n_boot=config["evaluation"]["bootstrap"],
        ci=config["evaluation"]["ci"],
        code=script_code("transfer_table.py"),
    log:
        f"{TRANSFER}/logs/comparison.log",
    conda:
        ENV
    script:
        "../workflow_scripts/transfer_table.py"


rule transfer_roc:
    input:
        predictions=lambda wc: [arm_paths(wc.task, a, s, r)["predictions"] for a in ARMS for s in SPLIT_IDS
                                for r in RUN_IDS],
    output:
        captioned(transfer_figure("roc"), "transfer_roc", "Transfer experiment"),
    params:
        groups=lambda wc: {a: [arm_paths(wc.task, a, s, r)["predictions"] for s in SPLIT_IDS for r in RUN_IDS]
                           for a in ARMS},
        style=canonical(config["figures"]),
        code=script_code("transfer_roc.py"),
    log:
        f"{FIGURES}/logs/transfer_task-{{task}}_roc.log",
    conda:
        ENV
    script:
        "../workflow_scripts/transfer_roc.py"


rule transfer_metrics:
    input:
        runs=lambda wc: [arm_paths(wc.task, a, s, r)[k] for a in ARMS for s in SPLIT_IDS for r in RUN_IDS
                         for k in ("predictions", "summary")],
    output:
        captioned(transfer_figure("metrics"), "transfer_metrics", "Transfer experiment"),
    params:
        runs=lambda wc: [dict(arm=a, split=s, run=r, **arm_paths(wc.task, a, s, r)) for a in ARMS
                         for s in SPLIT_IDS for r in RUN_IDS],
        style=canonical(config["figures"]),
        code=script_code("transfer_metrics.py"),
    log:
        f"{FIGURES}/logs/transfer_task-{{task}}_metrics.log",
    conda:
        ENV
    script:
        "../workflow_scripts/transfer_metrics.py"


rule transfer_embedding:
    input:
        unpack(lambda wc: {**arm_files(wc.task, wc.arm, SPLIT_IDS[0]),
                           "model": arm_paths(wc.task, wc.arm, SPLIT_IDS[0], RUN_IDS[0])["model"]}),
    output:
        figure=captioned(transfer_figure("embedding", arm="{arm}"), "transfer_embedding", "Transfer experiment"),
        table=derivatives.transfer_embedding(RESULTS, "{task}", XFER["modality"], XFER["variant"], "{arm}"),
    params:
        out_of_distribution=config["dataset"]["out_of_distribution"],
        style=canonical(config["figures"]),
        code=script_code("transfer_embedding.py"),
    log:
        f"{FIGURES}/logs/transfer_task-{{task}}_model-{{arm}}_embedding.log",
    conda:
        ENV
    script:
        "../workflow_scripts/transfer_embedding.py"
