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


def arm_inputs(wildcards):
    return arm_files(wildcards.task, wildcards.arm, wildcards.split)


def arm_files(task, arm, split):
    """Inputs of one transfer run: packed volumes or mosaics with their index, and the split."""
    spec = ARMS[arm]
    mod, reg = XFER["modality"], XFER["variant"]
    if spec["input"] == "mosaic":
        data = mosaic_paths(reg, mod, spec["layout"])
        files = {"data": data["mosaics"], "index": data["index"]}
    else:
        data = pack_paths(reg, mod)
        files = {"data": data["volumes"], "index": data["index"]}
    return {**files, "split": split_path(split, task)}


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
