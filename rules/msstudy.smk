# 004 study 2 (braindl.msstudy): cnn3d_ms pre-trained on the source task (CN vs AD), fine-tuned on CN vs
# MS, against the same network trained from scratch on CN vs MS; LRP-epsilon heatmaps of the fine-tuned
# runs' test scans and the share of their relevance inside the lesions (synthetic cohort: its lesion masks).


include: "common/msstudy.smk"


if MSS["enabled"]:
    if not MS_LESIONS:
        print("ms_study: no session has a lesion mask (synthetic.groups.MS is 0, or a BIDS dataset): the transfer "
              "comparison runs, the lesion relevance does not", file=sys.stderr)

    localrules:
        ms_pretrain_split,
        ms_table,
        ms_relevance,
        ms_figure,


    wildcard_constraints:
        msarm="|".join(msstudy.ARMS),


    rule ms_train:
        input:
            unpack(ms_train_inputs),
        output:
            **over_train_runs(lambda s, r: msstudy.run_paths(RESULTS, MSS, "{msarm}", s, r)),
        params:
            settings=lambda wc: canonical(msstudy.arm_settings(config["training"], MSS, wc.msarm)),
            task=lambda wc: msstudy.arm_task(MSS, wc.msarm),
            runs=train_job_numbers,
            code=script_code("train.py"),
        log:
            f"{RESULTS}/msstudy/logs/arm-{{msarm}}{TRAIN_JOB_LABEL}.log",
        threads: TRAIN_THREADS
        priority: TRAIN_PRIORITY
        conda:
            ENV
        resources:
            **TRAIN_RESOURCES,
        script:
            "../workflow_scripts/train.py"


    rule ms_pretrain_split:
        input:
            source=lambda wc: split_path(wc.split, MSS["source_task"]),
            target=lambda wc: split_path(wc.split, msstudy.TARGET_TASK),
        output:
            msstudy.pretrain_split_path(RESULTS, MSS, "{split}"),
        params:
            code=script_code("ms_pretrain_split.py"),
        log:
            f"{RESULTS}/msstudy/logs/pretrain_split-{{split}}.log",
        priority: TRAIN_PRIORITY
        conda:
            ENV
        script:
            "../workflow_scripts/ms_pretrain_split.py"


    rule ms_table:
        input:
            runs=[r[k] for r in MS_RUNS for k in ("predictions", "summary")],
        output:
            runs=captioned(MS_TABLES["runs"], "msstudy", "Thesis study 2 (AD to MS)"),
            summary=captioned(MS_TABLES["summary"], "msstudy", "Thesis study 2 (AD to MS)"),
        params:
            runs=MS_RUNS,
            code=script_code("ms_table.py"),
        log:
            f"{RESULTS}/msstudy/logs/table.log",
        conda:
            ENV
        script:
            "../workflow_scripts/ms_table.py"


    rule ms_heatmap:
        input:
            unpack(ms_heat_sources),
        output:
            **over_job_runs(lambda s, r: msstudy.heatmap_paths(RESULTS, MSS, s, r)),
        params:
            spec=architectures.method_specs(["lrp_epsilon"], {"lrp_epsilon": MSS["lrp_epsilon"],
                                                             "lrp_bias": HM["lrp_bias"]})["lrpepsilon"],
            settings={"target_class": msstudy.TARGET_CLASS, "device": config["training"]["device"]},
            layout=None,
            code=script_code("heatmap.py"),
        log:
            f"{RESULTS}/msstudy/logs/heatmap{HEAT_JOB_LABEL}.log",
        threads: TRAIN_THREADS
        conda:
            ENV
        resources:
            **TRAIN_RESOURCES,
            heatmap_batch=HM["batch_size"],
            occlusion_batch=HM["occlusion_batch"],
        script:
            "../workflow_scripts/heatmap.py"


    rule ms_lesion_mask:
        input:
            native=lambda wc: str(synthetic.truth_paths(TRUTH_DIR, wc.subject, wc.session)[f"{MSS['modality']}_lesions"]),
            image=lambda wc: ms_registered(wc)[MSS["modality"]],
            mask=lambda wc: ms_registered(wc)[f"{MSS['modality']}_mask"],
            sidecar=lambda wc: ms_registered(wc)[f"{MSS['modality']}_json"],
        output:
            **msstudy.lesion_paths(RESULTS, MSS, "{subject}", "{session}"),
        params:
            box=canonical(crop.box_settings(crop_settings(), MSS["modality"])[1]),
            aligned=MSS["variant"] != "none",
            code=script_code("ms_lesion_mask.py"),
        group:
            "session"
        log:
            f"{RESULTS}/msstudy/logs/lesions_sub-{{subject}}_ses-{{session}}.log",
        conda:
            ENV
        script:
            "../workflow_scripts/ms_lesion_mask.py"


    rule ms_relevance:
        input:
            heatmaps=[p[k] for p in MS_HEATMAPS for k in ("heatmaps", "index")],
            masks=[p for sub, ses in MS_LESIONS for p in msstudy.lesion_paths(RESULTS, MSS, sub, ses).values()],
        output:
            table=captioned(MS_TABLES["relevance"], "msstudy", "Thesis study 2 (AD to MS)"),
            summary=captioned(MS_TABLES["relevance_summary"], "msstudy", "Thesis study 2 (AD to MS)"),
        params:
            runs=MS_HEATMAPS,
            masks=[[f"sub-{sub}", ses, *msstudy.lesion_paths(RESULTS, MSS, sub, ses).values()] for sub, ses in MS_LESIONS],
            lesion_groups=synthetic.lesion_settings(config["synthetic"])["groups"],
            code=script_code("ms_relevance.py"),
        log:
            f"{RESULTS}/msstudy/logs/relevance.log",
        conda:
            ENV
        script:
            "../workflow_scripts/ms_relevance.py"


    rule ms_figure:
        input:
            runs=MS_TABLES["runs"],
            relevance=MS_TABLES["relevance"],
            summary=MS_TABLES["relevance_summary"],
        output:
            captioned(msstudy.figure_path(RESULTS, MSS, config["figures"]["format"]), "msstudy", "Thesis study 2 (AD to MS)"),
        params:
            style=canonical(config["figures"]),
            code=script_code("ms_figure.py"),
        log:
            f"{FIGURES}/logs/msstudy.log",
        conda:
            ENV
        script:
            "../workflow_scripts/ms_figure.py"
