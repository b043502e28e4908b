# The external stage's constants, paths, settings, checks and input functions (its rules: rules/external.smk).
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


def ext_heat_sources(wc):
    """What one external heatmap job reads: the trained runs and the dataset's data, lists over the job's
    runs (as ext_model_files for one run), and the dataset's pack sidecar."""
    def of_run(split, run):
        files = ext_model_files(SimpleNamespace(**{**dict(wc.items()), "split": split, "run": run}))
        return {k: v for k, v in files.items() if k != "pack_json"}

    return {**over_job_runs(of_run, wc),
            "pack_json": external.pack_paths(RESULTS, wc.extname, wc.reg, wc.mod)["json"]}


def ext_heat_outputs():
    """Rule external_heatmap's outputs: each of a run's heatmap files, listed over the job's runs."""
    return over_job_runs(lambda s, r: external.heatmap_paths(RESULTS, "{extname}", "{task}", "{mod}", "{reg}",
                                                             "{hmodel}", s, r, "{method}"))


def ext_heat_runs(wc):
    """The external heatmaps of every run of one unit and method (as unit_runs for the test sets)."""
    return [dict(split=s, run=r, **external.heatmap_paths(RESULTS, wc.extname, wc.task, wc.mod, wc.reg, wc.hmodel, s, r,
                                                          wc.method)) for s, r in RUN_KEYS]


def external_targets():
    if not XVAL_DATASETS:
        return []
    for _name, _spec in XVAL_DATASETS.items():
        if not _spec.get("labelled", True):
            print(f"external.datasets.{_name}: no labels: its predictions are written, its metrics are not",
                  file=sys.stderr)
    return external.targets(RESULTS, config, ATLAS_LABEL, RUN_KEYS)
