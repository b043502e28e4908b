# External validation (braindl.external): every selected run of `training` predicts every scan of each
# dataset of `external.datasets`, preprocessed by this workflow's own rules as a module (Snakefile) into
# results/external/<name>/; metrics beside the internal test sets', a figure, heatmaps and atlas tables.


include: "common/external.smk"


if XVAL_DATASETS:

    localrules:
        external_predictions,
        external_metrics,
        external_figure,


    wildcard_constraints:
        extname="|".join(XVAL_DATASETS),


    rule external_predict:
        input:
            unpack(ext_predict_inputs),
        output:
            external.prediction_path(RESULTS, "{extname}", "{task}", "{mod}", "{reg}", "{split}", "{run}"),
        params:
            labelled=lambda wc: XVAL_DATASETS[wc.extname].get("labelled", True),
            code=script_code("external_predict.py"),
        log:
            f"{RESULTS}/external/{{extname}}/logs/predict_task-{{task}}_{{mod}}_desc-{{reg}}_split-{{split}}_run-{{run}}.log",
        threads: TRAIN_THREADS
        conda:
            ENV
        resources:
            mem_mb=4000,
        script:
            "../workflow_scripts/external_predict.py"


    # the transfer experiment's runs (external.transfer_models): on the dataset's volumes or mosaics
    use rule external_predict as external_predict_model with:
        output:
            external.prediction_path(RESULTS, "{extname}", "{task}", "{mod}", "{reg}", "{split}", "{run}", "{arm}"),
        log:
            f"{RESULTS}/external/{{extname}}/logs/predict_task-{{task}}_{{mod}}_desc-{{reg}}_model-{{arm}}_split-{{split}}_run-{{run}}.log",


    rule external_predictions:
        input:
            lambda wc: [r["predictions"] for r in ext_runs(wc)],
        output:
            captioned(external.table_paths(RESULTS, "{extname}", "{task}", "{mod}")["predictions"], "external",
                      "External validation", "{extname}"),
        params:
            runs=ext_runs,
            code=script_code("external_tables.py"),
        log:
            f"{RESULTS}/external/{{extname}}/logs/predictions_task-{{task}}_{{mod}}.log",
        conda:
            ENV
        script:
            "../workflow_scripts/external_tables.py"


    rule external_metrics:
        input:
            unpack(ext_metric_inputs),
        output:
            metrics=captioned(external.table_paths(RESULTS, "{extname}", "{task}", "{mod}")["metrics"], "external",
                              "External validation", "{extname}"),
            summary=captioned(external.table_paths(RESULTS, "{extname}", "{task}", "{mod}")["summary"], "external",
                              "External validation", "{extname}"),
        params:
            runs=ext_runs,
            n_boot=config["evaluation"]["bootstrap"],
            ci=config["evaluation"]["ci"],
            code=script_code("external_metrics.py"),
        log:
            f"{RESULTS}/external/{{extname}}/logs/metrics_task-{{task}}_{{mod}}.log",
        conda:
            ENV
        script:
            "../workflow_scripts/external_metrics.py"


    rule external_figure:
        input:
            external.table_paths(RESULTS, "{extname}", "{task}", "{mod}")["summary"],
        output:
            captioned(external.figure_path(RESULTS, "{extname}", "{task}", "{mod}", config["figures"]["format"]),
                      "external", "External validation", "{extname}"),
        params:
            title=lambda wc: f"{wc.task} ({wc.mod}): internal test sets and {wc.extname}",
            style=canonical(config["figures"]),
            code=script_code("external_figure.py"),
        log:
            f"{FIGURES}/logs/external-{{extname}}_task-{{task}}_{{mod}}.log",
        conda:
            ENV
        script:
            "../workflow_scripts/external_figure.py"


    rule external_heatmap:
        input:
            unpack(ext_heat_sources),
        output:
            **ext_heat_outputs(),
        params:
            spec=lambda wc: HM_SPECS[wc.method],
            settings=heat_settings,
            layout=heat_layout,
            code=script_code("heatmap.py"),
        log:
            f"{RESULTS}/external/{{extname}}/logs/heatmap_task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}{HEAT_JOB_LABEL}_method-{{method}}.log",
        threads: TRAIN_THREADS
        conda:
            ENV
        resources:
            **TRAIN_RESOURCES,
            heatmap_batch=HM["batch_size"],
            occlusion_batch=HM["occlusion_batch"],
        script:
            "../workflow_scripts/heatmap.py"


    rule external_heatmap_summary:
        input:
            runs=lambda wc: [r[k] for r in ext_heat_runs(wc) for k in ("heatmaps", "index")],
            pack=lambda wc: external.pack_paths(RESULTS, wc.extname, wc.reg, wc.mod)["volumes"],
            pack_index=lambda wc: external.pack_paths(RESULTS, wc.extname, wc.reg, wc.mod)["index"],
            pack_json=lambda wc: external.pack_paths(RESULTS, wc.extname, wc.reg, wc.mod)["json"],
            atlas=atlas_files(),
        output:
            **external.group_paths(RESULTS, "{extname}", "{task}", "{mod}", "{reg}", "{hmodel}", "{method}"),
            **external.region_paths(RESULTS, "{extname}", "{task}", "{mod}", "{reg}", "{hmodel}", "{method}",
                                    ATLAS_LABEL),
        params:
            runs=ext_heat_runs,
            target=HM["target_class"],
            control=HM["control_class"],
            atlas=atlas_settings(),
            convention=lambda wc: architectures.ATLAS_CONVENTION[HM_SPECS[wc.method]["method"]],
            code=script_code("heatmap_summary.py"),
        group:
            "heatmap_summary"
        log:
            f"{RESULTS}/external/{{extname}}/logs/heatmap_task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_method-{{method}}_summary.log",
        conda:
            ENV
        resources:
            mem_mb=4000,
        script:
            "../workflow_scripts/heatmap_summary.py"
