# External validation (braindl.external): every selected run of `training` predicts every scan of each
# dataset of `external.datasets`, preprocessed by this workflow's own rules as a module (Snakefile) into
# results/external/<name>/; metrics beside the internal test sets', a figure, heatmaps and atlas tables.

# ---- external validation (rules/external.smk; each dataset's preprocessing: the module in the Snakefile) ----
XVAL, _xval_said = external.effective(config)
for _line in _xval_said:
    print(_line, file=sys.stderr)
XVAL_DATASETS = XVAL["datasets"]
for _problem in external.check_settings(config):
    raise WorkflowError(f"config: {_problem}")
ATLAS_LABEL = _atlas_label()


def ext_runs(wc):
    """Every run of a task and modality that predicts an external dataset, with its predictions file: the
    variant comparison's runs, and the transfer experiment's selected models (with their own predictions)."""
    runs = []
    if wc.task in XVAL["tasks"] and wc.mod in XVAL["modalities"]:
        runs += external.prediction_runs(RESULTS, wc.extname, wc.task, wc.mod, XVAL["variants"], SPLIT_IDS, RUN_IDS,
                                         TRAIN_MODEL)
    if wc.task in XVAL["transfer_tasks"] and wc.mod == XFER["modality"]:
        runs += external.transfer_runs(RESULTS, wc.extname, wc.task, XFER, XVAL["transfer_models"], SPLIT_IDS, RUN_IDS,
                                       lambda t, a, s, r: arm_paths(t, a, s, r)["predictions"])
    return runs


def ext_metric_inputs(wc):
    """The runs' predictions of the dataset, the internal metrics of the variant comparison's runs, and the
    transfer runs' own predictions (their internal test sets)."""
    runs = ext_runs(wc)
    out = {"runs": [r["predictions"] for r in runs], "own": [r["internal"] for r in runs if "internal" in r]}
    if any("internal" not in r for r in runs):
        out["internal"] = evaluation_paths(wc.task, wc.mod)["metrics"]
    return out


def ext_predict_inputs(wc):
    """What one external prediction job reads: the trained run and the dataset's data."""
    return {k: v for k, v in ext_model_files(wc).items() if k in ("model", "data", "index")}


def ext_model_files(wc):
    """The trained run and the dataset's data one external prediction or heatmap job reads: the variant
    comparison's run on the packed volumes, or a transfer run on the volumes or the mosaics it was trained on."""
    model = getattr(wc, "hmodel", None) or getattr(wc, "arm", None) or TRAIN_MODEL
    if model == TRAIN_MODEL:
        run = train_paths(wc.task, wc.mod, wc.reg, wc.split, wc.run)["model"]
        pred = external.prediction_path(RESULTS, wc.extname, wc.task, wc.mod, wc.reg, wc.split, wc.run)
    else:
        run = arm_paths(wc.task, model, wc.split, wc.run)["model"]
        pred = external.prediction_path(RESULTS, wc.extname, wc.task, wc.mod, wc.reg, wc.split, wc.run, model)
    spec = ARMS.get(model, {"input": "volume"})
    if spec["input"] == "mosaic":
        data = external.mosaic_paths(RESULTS, wc.extname, wc.reg, wc.mod, spec["layout"])
        files = {"data": data["mosaics"], "index": data["index"]}
    else:
        data = external.pack_paths(RESULTS, wc.extname, wc.reg, wc.mod)
        files = {"data": data["volumes"], "index": data["index"]}
    return {"model": run, "predictions": pred, **files,
            "pack_json": external.pack_paths(RESULTS, wc.extname, wc.reg, wc.mod)["json"]}


def ext_heat_runs(wc):
    """The external heatmaps of every run of one unit and method (as unit_runs for the test sets)."""
    return [dict(split=s, run=r, **external.heatmap_paths(RESULTS, wc.extname, wc.task, wc.mod, wc.reg, wc.hmodel, s, r,
                                                          wc.method)) for s in SPLIT_IDS for r in RUN_IDS]


def external_targets():
    if not XVAL_DATASETS:
        return []
    for _name, _spec in XVAL_DATASETS.items():
        if not _spec.get("labelled", True):
            print(f"external.datasets.{_name}: no labels: its predictions are written, its metrics are not",
                  file=sys.stderr)
    return external.targets(RESULTS, config, ATLAS_LABEL, [(s, r) for s in SPLIT_IDS for r in RUN_IDS])


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
            unpack(ext_model_files),
        output:
            **external.heatmap_paths(RESULTS, "{extname}", "{task}", "{mod}", "{reg}", "{hmodel}", "{split}", "{run}",
                                     "{method}"),
        params:
            spec=lambda wc: HM_SPECS[wc.method],
            settings=heat_settings,
            layout=heat_layout,
            code=script_code("heatmap.py"),
        log:
            f"{RESULTS}/external/{{extname}}/logs/heatmap_task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_split-{{split}}_run-{{run}}_method-{{method}}.log",
        threads: TRAIN_THREADS
        conda:
            ENV
        resources:
            **TRAIN_RESOURCES,
            heatmap_batch=HM["batch_size"],
            occlusion_batch=HM["occlusion_batch"],
        script:
            "../workflow_scripts/heatmap.py"


    rule external_heatmap_groups:
        input:
            runs=lambda wc: [r[k] for r in ext_heat_runs(wc) for k in ("heatmaps", "index")],
            pack=lambda wc: external.pack_paths(RESULTS, wc.extname, wc.reg, wc.mod)["volumes"],
            pack_index=lambda wc: external.pack_paths(RESULTS, wc.extname, wc.reg, wc.mod)["index"],
            pack_json=lambda wc: external.pack_paths(RESULTS, wc.extname, wc.reg, wc.mod)["json"],
        output:
            **external.group_paths(RESULTS, "{extname}", "{task}", "{mod}", "{reg}", "{hmodel}", "{method}"),
        params:
            runs=ext_heat_runs,
            target=HM["target_class"],
            control=HM["control_class"],
            code=script_code("heatmap_groups.py"),
        group:
            "heatmap_summary"
        log:
            f"{RESULTS}/external/{{extname}}/logs/heatmap_task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_method-{{method}}_groups.log",
        conda:
            ENV
        resources:
            mem_mb=4000,
        script:
            "../workflow_scripts/heatmap_groups.py"


    rule external_heatmap_regions:
        input:
            runs=lambda wc: [r[k] for r in ext_heat_runs(wc) for k in ("heatmaps", "index")],
            pack_json=lambda wc: external.pack_paths(RESULTS, wc.extname, wc.reg, wc.mod)["json"],
            atlas=atlas_files(),
        output:
            **external.region_paths(RESULTS, "{extname}", "{task}", "{mod}", "{reg}", "{hmodel}", "{method}",
                                    ATLAS_LABEL),
        params:
            runs=ext_heat_runs,
            target=HM["target_class"],
            control=HM["control_class"],
            atlas=atlas_settings(),
            convention=lambda wc: architectures.ATLAS_CONVENTION[HM_SPECS[wc.method]["method"]],
            code=script_code("heatmap_regions.py"),
        group:
            "heatmap_summary"
        log:
            f"{RESULTS}/external/{{extname}}/logs/heatmap_task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_method-{{method}}_regions.log",
        conda:
            ENV
        resources:
            mem_mb=4000,
        script:
            "../workflow_scripts/heatmap_regions.py"
