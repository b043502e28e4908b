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


def runs_of_job(mode, setting, wc=None):
    """The (split, run) pairs of one job of a unit's runs (``mode``: the value of config key ``setting``,
    braindl.planning.job_runs): without ``wc`` the wildcard patterns of its outputs, with a job's
    wildcards the runs it reads."""
    given = {k: getattr(wc, k) for k in ("split", "run") if wc is not None and hasattr(wc, k)}
    return planning.job_runs(mode, SPLIT_IDS, RUN_IDS, setting=setting, **given)


def over_runs(mode, setting, files_of_run, wc=None):
    """Named lists of the files ``files_of_run(split, run)`` names, over the runs of one job
    (runs_of_job): with ``wc`` its inputs, without the patterns of its outputs."""
    per_run = [files_of_run(s, r) for s, r in runs_of_job(mode, setting, wc)]
    return {k: [files[k] for files in per_run] for k in per_run[0]}


# heatmap jobs: heatmaps.job_runs
HEAT_JOB_RUNS = config["heatmaps"]["job_runs"]


def heat_job_runs(wc=None):
    return runs_of_job(HEAT_JOB_RUNS, "heatmaps.job_runs", wc)


def over_job_runs(files_of_run, wc=None):
    return over_runs(HEAT_JOB_RUNS, "heatmaps.job_runs", files_of_run, wc)


# what tells one heatmap job's log from another's of the same unit and method
HEAT_JOB_LABEL = planning.job_label(HEAT_JOB_RUNS)
# training jobs (train, train_model, pretrain, finetune, ms_train): resources.training_job_runs
TRAIN_JOB_RUNS = config["resources"]["training_job_runs"]
TRAIN_JOB_LABEL = planning.job_label(TRAIN_JOB_RUNS)


def train_job_runs(wc=None):
    return runs_of_job(TRAIN_JOB_RUNS, "resources.training_job_runs", wc)


def over_train_runs(files_of_run, wc=None):
    """Named lists over the runs of one training job: its outputs (without ``wc``) or inputs."""
    return over_runs(TRAIN_JOB_RUNS, "resources.training_job_runs", files_of_run, wc)


def train_job_numbers(wc):
    """A training job's runs as [split, run] numbers, in the order of its output lists."""
    return [[int(s), int(r)] for s, r in train_job_runs(wc)]


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
# training jobs and the splits, packs and mosaics they read go first when several jobs are ready: the
# evaluations, heatmaps, tables and figures wait on them, while nothing waits on a figure (a scheduling
# order only: no output depends on it)
TRAIN_PRIORITY = 1
# checkpoint_s: the most seconds between two checkpoints of a run (a resource: it changes no result)
TRAIN_RESOURCES = {"mem_mb": 6000, "gpu": config["resources"]["training_gpus"],
                   "checkpoint_s": int(round(60 * config["resources"]["checkpoint_minutes"]))}


def _train_run_inputs(wc, split, run):
    files = {"split": split_path(split, wc.task)}
    if FINETUNE_FROM is not None and wc.task != FINETUNE_FROM:
        files["finetune"] = train_paths(FINETUNE_FROM, wc.mod, wc.reg, split, run)["model"]
    return files


def train_inputs(wc):
    """A train job's inputs: the pack, and per run (lists over the job's runs) its split and the model it
    is fine-tuned from (training.finetune_from)."""
    return {"data": pack_paths(wc.reg, wc.mod)["volumes"], "index": pack_paths(wc.reg, wc.mod)["index"],
            **over_train_runs(lambda s, r: _train_run_inputs(wc, s, r), wc)}


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
