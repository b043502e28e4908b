# The transfer stage's constants, paths, settings, checks and input functions (its rules: rules/transfer.smk).
# ---- mosaics and the 3D-vs-2D transfer experiment (000) -----------------------------------
MOSAIC = f"{RESULTS}/mosaic"
TRANSFER = f"{RESULTS}/transfer"
LAYOUTS = config["mosaic"]["layouts"]


def _check_transfer():
    """Config errors of the transfer experiment, before any job runs (braindl.planning.transfer_problems)."""
    for problem in planning.transfer_problems(config):
        raise WorkflowError(f"config: {problem}")


_check_transfer()


def mosaic_paths(reg="{reg}", mod="{mod}", layout="{layout}"):
    return derivatives.mosaics(RESULTS, reg, mod, layout)


def arm_settings(arm):
    """Training settings of one transfer model (braindl.planning.transfer_arm_settings)."""
    return canonical(planning.transfer_arm_settings(config, arm))


def arm_paths(task="{task}", arm="{arm}", split="{split}", run="{run}"):
    return derivatives.transfer_run(RESULTS, task, XFER["modality"], XFER["variant"], arm, split, run)


wildcard_constraints:
    arm="|".join(ARMS) or "no-model",
    layout="|".join(LAYOUTS) or "no-layout",


def arm_inputs(wc):
    """A train_model job's inputs: the data, and the split of each of its runs (a list over them)."""
    return {**arm_data(wc.arm), **over_train_runs(lambda s, r: {"split": split_path(s, wc.task)}, wc)}


def arm_data(arm):
    """What a transfer model reads: packed volumes or mosaics, with their index."""
    spec = ARMS[arm]
    mod, reg = XFER["modality"], XFER["variant"]
    if spec["input"] == "mosaic":
        data = mosaic_paths(reg, mod, spec["layout"])
        return {"data": data["mosaics"], "index": data["index"]}
    data = pack_paths(reg, mod)
    return {"data": data["volumes"], "index": data["index"]}


def arm_files(task, arm, split):
    """Inputs of one transfer run: its data (arm_data) and the split."""
    return {**arm_data(arm), "split": split_path(split, task)}


def transfer_table():
    return derivatives.transfer_comparison(RESULTS, XFER["modality"], XFER["variant"])


def transfer_figure(kind, task="{task}", arm=None):
    return derivatives.transfer_figure(RESULTS, task, XFER["modality"], XFER["variant"], kind,
                                       config["figures"]["format"], arm)


def transfer_targets():
    """The comparison table, a metrics figure per task, the ROC figure and one embedding figure (and
    table) per model."""
    if not ARMS:
        return []
    files = [transfer_table()] + [transfer_figure("metrics", t) for t in XFER["tasks"]]
    if XFER["roc_task"]:
        files.append(transfer_figure("roc", XFER["roc_task"]))
    if XFER["embedding_task"]:
        for arm in ARMS:
            files.append(transfer_figure("embedding", XFER["embedding_task"], arm))
    return files
