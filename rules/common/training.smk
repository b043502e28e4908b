# The training stage's constants, paths, settings, checks and input functions (its rules: rules/training.smk).
# ---- splits, packing, training, evaluation, figures ------------------------------------
SPLITS = f"{RESULTS}/splits"
PACK = f"{RESULTS}/pack"
TRAIN = f"{RESULTS}/training"
EVAL = f"{RESULTS}/evaluation"
TASKS = config["training"]["tasks"]
TRAIN_MODALITIES = config["training"]["modalities"]
SPLIT_IDS = planning.split_ids(config)
RUN_IDS = planning.run_ids(config)
RUN_KEYS = [(s, r) for s in SPLIT_IDS for r in RUN_IDS]  # every trained run of a unit, in one order


def heat_job_runs(wc=None):
    """The (split, run) pairs of one heatmap job (heatmaps.job_runs, braindl.planning.heatmap_job_runs):
    without ``wc`` the wildcard patterns of its outputs, with a job's wildcards the runs it reads."""
    given = {k: getattr(wc, k) for k in ("split", "run") if wc is not None and hasattr(wc, k)}
    return planning.heatmap_job_runs(config["heatmaps"]["job_runs"], SPLIT_IDS, RUN_IDS, **given)


# what tells one heatmap job's log apart from another's of the same unit and method
HEAT_JOB_LABEL = planning.heatmap_job_label(config["heatmaps"]["job_runs"])


def over_job_runs(files_of_run, wc=None):
    """Named lists of the files ``files_of_run(split, run)`` names, over the runs of one heatmap job
    (heat_job_runs): with ``wc`` its inputs, without the patterns of its outputs."""
    per_run = [files_of_run(s, r) for s, r in heat_job_runs(wc)]
    return {k: [files[k] for files in per_run] for k in per_run[0]}


FINETUNE_FROM = config["training"]["finetune_from"]


XFER = config["transfer"]
ARMS = planning.transfer_models(config)
PRE = config["pretraining"]
PIF = config["pif_study"]
MSS = config["ms_study"]
# every task that needs splits: the 3D runs, the transfer experiment, the pre-training sweep and the thesis'
# studies 5 (PIF) and 2 (AD to MS)
ALL_TASKS = planning.split_tasks(config)
for _problem in planning.study_problems(config):
    raise WorkflowError(f"config: {_problem}")


wildcard_constraints:
    task="|".join(ALL_TASKS),
    mod="T1w|pet",
    split="[0-9]+",
    run="[0-9]+",

def split_modalities(task):
    """The modalities trained on ``task`` (braindl.planning.split_modalities)."""
    return planning.split_modalities(config, task)


def split_path(split, task="{task}"):
    return derivatives.split(RESULTS, task, split)


def split_settings():
    """The split settings (not n_repeats: more runs per split reuse the splits)."""
    return canonical({k: v for k, v in config["splits"].items() if k != "n_repeats"})


def pack_paths(reg="{reg}", mod="{mod}"):
    return derivatives.pack(RESULTS, reg, mod)


def train_paths(task="{task}", mod="{mod}", reg="{reg}", split="{split}", run="{run}"):
    return derivatives.training_run(RESULTS, task, mod, reg, split, run)


def training_settings():
    """Training config as the train rule sees it (braindl.planning.training_settings)."""
    return canonical(planning.training_settings(config))


# every training job (3D runs, transfer models, pre-training and fine-tuning) alike
TRAIN_THREADS = config["resources"]["training_threads"]
# checkpoint_s: the most seconds between two checkpoints of a run (a resource: it changes no result)
TRAIN_RESOURCES = {"mem_mb": 6000, "gpu": config["resources"]["training_gpus"],
                   "checkpoint_s": int(round(60 * config["resources"]["checkpoint_minutes"]))}


def state_dir(wildcards, output):
    """Per-epoch checkpoint folder of a run, beside its model (removed when the run completes)."""
    return derivatives.run_state_dir(output.model)


def train_inputs(wildcards):
    files = {
        "data": pack_paths(wildcards.reg, wildcards.mod)["volumes"],
        "index": pack_paths(wildcards.reg, wildcards.mod)["index"],
        "split": split_path(wildcards.split, wildcards.task),
    }
    if FINETUNE_FROM is not None and wildcards.task != FINETUNE_FROM:
        files["finetune"] = train_paths(FINETUNE_FROM, wildcards.mod, wildcards.reg, wildcards.split, wildcards.run)[
            "model"
        ]
    return files


def evaluation_paths(task="{task}", mod="{mod}"):
    return derivatives.evaluation(RESULTS, task, mod)


def figure_path(kind, task="{task}", mod="{mod}"):
    return derivatives.variant_figure(RESULTS, task, mod, kind, config["figures"]["format"])


def training_targets():
    """Evaluation tables and the three registration-comparison figures per task and modality."""
    files = []
    for task in TASKS:
        for mod in TRAIN_MODALITIES:
            files += list(evaluation_paths(task, mod).values())
            files += [figure_path(k, task, mod) for k in ("variants", "roc", "splits")]
    return files
