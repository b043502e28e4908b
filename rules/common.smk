# Shared names, the subject/session list and path helpers (parse time: no image is read).
import functools
import os
import sys
from pathlib import Path

import pandas as pd

from braindl import (architectures, crop, external, extraction, inputs, mosaic, msstudy, patches, pifstudy, planning,
                     pretraining, registration, splits, synthetic)

from braindl.provenance import canonical, script_hash


@functools.cache
def script_code(script):
    """The code a rule runs (its workflow script and the library modules it imports, comments and
    docstrings left out) as a digest: a rule's `params: code=` reruns it when that code changes."""
    return script_hash(Path(workflow.basedir) / "workflow_scripts" / script)


RESULTS = config["results_dir"]
DATASET = config["dataset"]
MODALITIES = DATASET["modalities"]
SYNTHETIC = DATASET["bids_dir"] is None
PET_ROUTE = config["registration"]["pet_route"]
ENV = "../envs/braindl.yaml"
TRUTH_DIR = f"{RESULTS}/synthetic/groundtruth"
# pybids' index of a user's dataset, kept between parses (every cluster job parses the Snakefile)
INDEX_CACHE = os.path.join(".snakemake", "braindl", "bids_index")

if SYNTHETIC:
    # a group of 0 subjects (MS by default) need not be a diagnosis of the dataset
    _unknown = sorted(set(synthetic.cohort_diagnoses(config["synthetic"])) - set(DATASET["diagnoses"]))
    if _unknown:
        raise WorkflowError(
            f"config: synthetic.groups has subjects of diagnoses {_unknown} missing from dataset.diagnoses"
        )
    BIDS_DIR = f"{RESULTS}/synthetic/bids"
    COHORT = synthetic.cohort_table(config["synthetic"])
    SYN_DIAGNOSES = synthetic.cohort_diagnoses(config["synthetic"])
    SCANS = pd.DataFrame(
        [
            dict(participant_id=row.participant_id, session_id=ses, modality=m,
                 path=str(synthetic.raw_paths(BIDS_DIR, row.participant_id[4:], ses)[m]))
            for row in COHORT.itertuples()
            for ses in synthetic.session_labels(row.n_sessions)
            for m in MODALITIES
        ],
        columns=["participant_id", "session_id", "modality", "path"],
    )
else:
    BIDS_DIR = DATASET["bids_dir"]
    SYN_DIAGNOSES = []
    # files only, never a crash on a user's file: check_inputs reports every problem
    DISCOVERY = inputs.discover(BIDS_DIR, MODALITIES, DATASET["filters"], DATASET["runs"], DATASET["participants"],
                                PET_ROUTE, cache_dir=INDEX_CACHE)
    # a missing file or broken link stays out of the DAG (Snakemake would stop on it before check_inputs
    # can name it)
    SCANS = inputs.existing_scans(DISCOVERY.scans, MODALITIES, PET_ROUTE)

RAW = {(p[4:], ses, m): path for p, ses, m, path in SCANS[["participant_id", "session_id", "modality", "path"]].itertuples(index=False)}
# the modalities of each session, and the distinct sets of them: each per-session rule has one variant per set
SESSION_MODS = inputs.session_modalities(SCANS, MODALITIES)
MODALITY_SETS = sorted(set(SESSION_MODS.values()), key=lambda s: (-len(s), s)) or [tuple(MODALITIES)]
SESSIONS = pd.DataFrame(list(SESSION_MODS), columns=["subject", "session"])
IMAGES = list(RAW.values())
MANIFEST = f"{RESULTS}/inputs/manifest.tsv"
EXT = f"{RESULTS}/extraction"
REG = f"{RESULTS}/registration"
STRIP = f"{RESULTS}/skullstrip"
CROP = f"{RESULTS}/crop"
QC = f"{RESULTS}/qc"
VARIANTS = config["registration"]["variants"]
FOLDER = registration.FOLDER

if PET_ROUTE == "via_t1" and "pet" in MODALITIES and "T1w" not in MODALITIES:
    raise WorkflowError(
        "config: registration.pet_route via_t1 needs T1w in dataset.modalities; use pet_template for PET-only data"
    )
_missing_presets = sorted(set(MODALITIES) - set(config["crop"]["preset"]))
if _missing_presets:
    raise WorkflowError(f"config: crop.preset has no box for modality {_missing_presets}")
for _mod, _name in config["crop"]["preset"].items():
    if _name not in config["crop"]["box"]:
        raise WorkflowError(f"config: crop.preset.{_mod} = {_name!r} is not one of crop.box {sorted(config['crop']['box'])}")

wildcard_constraints:
    subject="[A-Za-z0-9]+",
    session="[A-Za-z0-9]+",
    reg="none|linear|syn",

SYN = f"{RESULTS}/synthetic"


def _cohort_files():
    """Every image, sidecar and ground-truth file of the synthetic cohort's sessions, and its sessions tables."""
    files = []
    diagnosis = dict(zip(COHORT.participant_id, COHORT.diagnosis))
    for sub, ses in zip(SESSIONS.subject, SESSIONS.session):
        files += [str(p) for p in synthetic.session_truth_files(config["synthetic"], TRUTH_DIR, sub, ses,
                                                                diagnosis[f"sub-{sub}"])]
        files += [str(p) for p in synthetic.raw_paths(BIDS_DIR, sub, ses).values()]
    files += [f"{BIDS_DIR}/sub-{sub}/sub-{sub}_sessions.tsv" for sub in sorted(SESSIONS.subject.unique())]
    return files


COHORT_FILES = _cohort_files() if SYNTHETIC else []


def _check_inputs_input(wildcards):
    """The dataset's tables and the selected images that exist (the job names every problem, missing
    files included)."""
    if SYNTHETIC:
        return {"images": IMAGES, "participants": f"{BIDS_DIR}/participants.tsv",
                "sessions": [f for f in COHORT_FILES if f.endswith("_sessions.tsv")]}
    tables = [Path(BIDS_DIR, "participants.tsv")]
    tables += [Path(BIDS_DIR, p, f"{p}_sessions.tsv") for p in sorted(set(SCANS["participant_id"]))]
    return {"images": IMAGES, "tables": [str(t) for t in tables if t.is_file()]}


def session_pairs():
    """(subject, session) labels of every session, in a stable order."""
    return list(SESSION_MODS)


def session_mods(subject, session):
    """The modalities a session has (a tuple in dataset.modalities order)."""
    return SESSION_MODS[(subject, session)]


def set_suffix(mods):
    """Rule-name suffix of the per-session rules of sessions with ``mods`` ('' for every modality)."""
    return "" if tuple(mods) == tuple(MODALITIES) else f"_{'_'.join(mods)}"


def of_set(mods, function):
    """Input function of the per-session rule made for sessions with exactly ``mods``. For a session
    of another set it names an input no rule makes and no dataset has, so Snakemake drops this rule
    for that session (quietly: it takes the rule whose inputs exist) and exactly one rule makes each
    file."""

    def inputs_of(wildcards):
        have = SESSION_MODS.get((wildcards.subject, wildcards.session))
        if have != tuple(mods):
            said = ", ".join(have) if have else "no selected scan"
            return {"session": f"{BIDS_DIR}/sub-{wildcards.subject}/ses-{wildcards.session} "
                               f"(has {said}; this rule is for {', '.join(mods)})"}
        return function(wildcards)

    return inputs_of


def _scans(wildcards):
    """Native scans of one session, one per modality it has."""
    return {m: RAW[(wildcards.subject, wildcards.session, m)] for m in session_mods(wildcards.subject, wildcards.session)}


def ext_paths(mods, subject="{subject}", session="{session}"):
    return extraction.extraction_paths(EXT, subject, session, mods, PET_ROUTE)


def native_inputs(wildcards):
    """What a registration job reads of its session's extraction outputs."""
    mods = session_mods(wildcards.subject, wildcards.session)
    return extraction.registration_inputs(ext_paths(mods, wildcards.subject, wildcards.session), _scans(wildcards))


def reg_paths(variant, mods, subject="{subject}", session="{session}"):
    return registration.registration_paths(REG, subject, session, variant, mods, PET_ROUTE)


def strip_paths(mods, reg="{reg}", subject="{subject}", session="{session}"):
    """Outputs of one skull-stripping job: stripped image and QC figure per modality, QC rows."""
    pre = f"sub-{subject}_ses-{session}"
    out = {}
    for m in mods:
        d = f"{STRIP}/sub-{subject}/ses-{session}/{FOLDER[m]}"
        out[f"{m}_brain"] = f"{d}/{pre}_desc-{reg}_{m}.nii.gz"
        out[f"{m}_qc"] = f"{QC}/sub-{subject}/ses-{session}/{pre}_desc-{reg}_{m}_qc.png"
    out["qc"] = f"{STRIP}/sub-{subject}/ses-{session}/{pre}_desc-{reg}_qc.tsv"
    return out


def crop_paths(mods, reg="{reg}", subject="{subject}", session="{session}"):
    pre = f"sub-{subject}_ses-{session}"
    out = {}
    for m in mods:
        d = f"{CROP}/sub-{subject}/ses-{session}/{FOLDER[m]}"
        out[m] = f"{d}/{pre}_desc-{reg}_{m}.nii.gz"
        out[f"{m}_json"] = f"{d}/{pre}_desc-{reg}_{m}.json"
    return out


def session_scans_path(subject="{subject}", session="{session}"):
    """The scans of one session the workflow uses (rule session_scans)."""
    return f"{RESULTS}/inputs/sub-{subject}/ses-{session}/sub-{subject}_ses-{session}_scans.tsv"


def modality_sessions_path(mod="{mod}"):
    """The sessions with a scan of ``mod`` and the digest of their data (rule modality_sessions)."""
    return f"{RESULTS}/inputs/desc-{mod}_sessions.tsv"


_SCAN_ROWS = [list(r) for r in SCANS[["participant_id", "session_id", "modality", "path"]].itertuples(index=False)]
_ROWS_OF_SESSION, _ROWS_OF_MOD = {}, {}
for _row in _SCAN_ROWS:  # grouped once: the list jobs' params ask per session and per modality
    _ROWS_OF_SESSION.setdefault((_row[0][4:], _row[1]), []).append(_row)
    _ROWS_OF_MOD.setdefault(_row[2], []).append(_row)


def scan_rows(subject=None, session=None, mod=None):
    """[participant_id, session_id, modality, path] of the selected scans of one session, or of one
    modality."""
    if subject is not None:
        return _ROWS_OF_SESSION.get((subject, session), [])
    return _ROWS_OF_MOD.get(mod, [])


def mod_sessions(mod):
    """(subject, session) of the sessions that have a scan of ``mod``."""
    return [k for k, mods in SESSION_MODS.items() if mod in mods]


@functools.lru_cache(maxsize=None)
def data_digest(mods):
    """Digest of the scans of ``mods`` (participant, session, modality, path) and of the clinical tables:
    a param of modality_sessions, whose list the gathering rules (QC table, splits, packs) read, so that
    a new session, a dropped scan or an edited diagnosis reruns them."""
    digest = inputs.scans_digest(SCANS, list(mods), None if SYNTHETIC else BIDS_DIR)
    if SYNTHETIC:
        cohort = COHORT.to_csv(sep="\t", index=False)
        digest = f"{digest}-{inputs.text_digest(cohort)}"
    return digest


def qc_table(reg="{reg}"):
    return f"{QC}/desc-{reg}_qc.tsv"


QC_SCANS = f"{QC}/scans_qc.tsv"


def preprocessed_targets():
    """Every cropped scan of every variant, and the QC table per variant."""
    files = [qc_table(v) for v in VARIANTS] + [QC_SCANS]
    for v in VARIANTS:
        for (sub, ses), mods in SESSION_MODS.items():
            files += list(crop_paths(mods, v, sub, ses).values())
    return files


def crop_settings():
    """The crop config this workflow's modalities use (other presets do not rerun cropping)."""
    preset = {m: config["crop"]["preset"][m] for m in MODALITIES}
    return canonical({
        "preset": preset,
        "box": {name: config["crop"]["box"][name] for name in preset.values()},
        "normalisation": config["crop"]["normalisation"],
    })


def captioned(path, caption, category, subcategory=None):
    """An output shown in `snakemake --report`, with the caption rules/captions/<caption>.rst."""
    return report(path, caption=f"captions/{caption}.rst", category=category, subcategory=subcategory)


# ---- splits, packing, training, evaluation, figures ------------------------------------
SPLITS = f"{RESULTS}/splits"
PACK = f"{RESULTS}/pack"
TRAIN = f"{RESULTS}/training"
EVAL = f"{RESULTS}/evaluation"
FIGURES = f"{RESULTS}/figures"
TASKS = config["training"]["tasks"]
TRAIN_MODALITIES = config["training"]["modalities"]
SPLIT_IDS = [f"{k:02d}" for k in range(1, config["splits"]["n_splits"] + 1)]
RUN_IDS = [f"{r:02d}" for r in range(1, config["splits"]["n_repeats"] + 1)]
FINETUNE_FROM = config["training"]["finetune_from"]

_untrained = sorted(set(TRAIN_MODALITIES) - set(MODALITIES))
if _untrained:
    raise WorkflowError(f"config: training.modalities {_untrained} are not in dataset.modalities {MODALITIES}")
if FINETUNE_FROM is not None and FINETUNE_FROM not in TASKS:
    raise WorkflowError(f"config: training.finetune_from {FINETUNE_FROM!r} is not one of training.tasks {TASKS}")
if config["training"]["pretrained"] and not Path(config["training"]["pretrained"]).is_file():
    raise WorkflowError(f"config: training.pretrained {config['training']['pretrained']}: file not found")
for _mod in TRAIN_MODALITIES:
    _preset = config["crop"]["preset"][_mod]
    try:
        architectures.check_3d_input(config["training"]["model"], config["crop"]["box"][_preset]["shape"],
                                     config["training"]["input_pool"])
    except ValueError as err:
        raise WorkflowError(f"config: training.model on the {_mod} crop (crop.box.{_preset}): {err}; "
                            "lower training.input_pool or enlarge the box") from None


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


# ---- the thesis' studies 5 (PIF) and 2 (AD to MS): their plans (rules/pifstudy.smk, rules/msstudy.smk)
PIF_PLAN = pifstudy.study_plan(PIF, len(SPLIT_IDS)) if PIF["tasks"] else None
PIF_RUNS = pifstudy.planned_runs(RESULTS, PIF, PIF_PLAN) if PIF["tasks"] else []
MS_RUNS = msstudy.planned_runs(RESULTS, MSS, msstudy.ARMS, SPLIT_IDS, RUN_IDS) if MSS["enabled"] else []
MS_HEATMAPS = [dict(split=s, run=r, **msstudy.heatmap_paths(RESULTS, MSS, s, r)) for s in SPLIT_IDS for r in RUN_IDS]
MS_TABLES = msstudy.table_paths(RESULTS, MSS)
# sessions with a native lesion mask of the study's modality: the synthetic cohort's lesion groups
MS_LESIONS = (msstudy.lesion_sessions(COHORT, synthetic.lesion_settings(config["synthetic"])["groups"],
                                      [p for p in session_pairs() if MSS["modality"] in session_mods(*p)])
              if MSS["enabled"] and SYNTHETIC else [])


def ms_registered(wc):
    """The registration outputs of a session in the MS study's variant (its lesion mask takes their chain)."""
    return reg_paths(MSS["variant"], session_mods(wc.subject, wc.session), wc.subject, wc.session)


def study_targets():
    """The tables and figures of the thesis' studies 5 and 2 that are switched on."""
    files = []
    if PIF["tasks"]:
        files += [*pifstudy.table_paths(RESULTS, PIF).values(), pifstudy.figure_path(RESULTS, PIF, config["figures"]["format"])]
    if MSS["enabled"]:
        files += msstudy.targets(RESULTS, MSS, config["figures"]["format"], bool(MS_LESIONS))
    return files


def split_modalities(task):
    """The modalities trained on ``task`` (braindl.planning.split_modalities)."""
    return planning.split_modalities(config, task)


def split_path(split, task="{task}"):
    return f"{SPLITS}/task-{task}/task-{task}_split-{split}_split.tsv"


def split_settings():
    """The split settings (not n_repeats: more runs per split reuse the splits)."""
    return canonical({k: v for k, v in config["splits"].items() if k != "n_repeats"})


def pack_paths(reg="{reg}", mod="{mod}"):
    pre = f"{PACK}/desc-{reg}_{mod}"
    return {"volumes": f"{pre}_volumes.npy", "index": f"{pre}_index.tsv", "json": f"{pre}_volumes.json"}


def train_paths(task="{task}", mod="{mod}", reg="{reg}", split="{split}", run="{run}"):
    pre = f"{TRAIN}/task-{task}/{mod}/desc-{reg}/task-{task}_desc-{reg}_split-{split}_run-{run}"
    return {
        "model": f"{pre}_model.pt",
        "history": f"{pre}_history.tsv",
        "predictions": f"{pre}_predictions.tsv",
        "summary": f"{pre}_summary.json",
    }


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
    return f"{Path(output.model).with_suffix('')}_state"


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
    pre = f"{EVAL}/task-{task}/task-{task}_{mod}"
    return {
        "metrics": f"{pre}_metrics.tsv",
        "summary": f"{pre}_summary.tsv",
        "comparison": f"{pre}_variants.tsv",
    }


def figure_path(kind, task="{task}", mod="{mod}"):
    return f"{FIGURES}/task-{task}_{mod}_{kind}.{config['figures']['format']}"


def training_targets():
    """Evaluation tables and the three registration-comparison figures per task and modality."""
    files = []
    for task in TASKS:
        for mod in TRAIN_MODALITIES:
            files += list(evaluation_paths(task, mod).values())
            files += [figure_path(k, task, mod) for k in ("variants", "roc", "splits")]
    return files


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
    pre = f"{MOSAIC}/desc-{reg}_{mod}_layout-{layout}"
    return {"mosaics": f"{pre}_mosaics.npy", "index": f"{pre}_index.tsv", "json": f"{pre}_mosaics.json"}


def arm_settings(arm):
    """Training settings of one transfer model (braindl.planning.transfer_arm_settings)."""
    return canonical(planning.transfer_arm_settings(config, arm))


def arm_paths(task="{task}", arm="{arm}", split="{split}", run="{run}"):
    mod, reg = XFER["modality"], XFER["variant"]
    pre = f"{TRANSFER}/task-{task}/model-{arm}/task-{task}_{mod}_desc-{reg}_model-{arm}_split-{split}_run-{run}"
    return {
        "model": f"{pre}_model.pt",
        "history": f"{pre}_history.tsv",
        "predictions": f"{pre}_predictions.tsv",
        "summary": f"{pre}_summary.json",
    }


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
    return f"{TRANSFER}/{XFER['modality']}_desc-{XFER['variant']}_comparison.tsv"


def transfer_figure(kind, task="{task}", arm=None):
    model = "" if arm is None else f"_model-{arm}"
    return f"{FIGURES}/transfer_task-{task}_{XFER['modality']}_desc-{XFER['variant']}{model}_{kind}.{config['figures']['format']}"


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


# ---- 001's pre-training sweep ---------------------------------------------------------------
PRETRAIN = f"{RESULTS}/pretraining"
SIZES = [pretraining.size_label(f) for f in PRE["fractions"]] if PRE["model"] else []


def _check_pretraining():
    for problem in planning.pretraining_problems(config):
        raise WorkflowError(f"config: {problem}")


_check_pretraining()


wildcard_constraints:
    size="[0-9]{3}",
    source="none|[0-9]{3}",


def _sweep_name(stage, task, size_or_source, split, run):
    mod, reg, arm = XFER["modality"], XFER["variant"], PRE["model"]
    entity = "size" if stage == "pretrain" else "from"
    return (f"{PRETRAIN}/model-{arm}/{stage}/task-{task}_{mod}_desc-{reg}_model-{arm}_{entity}-{size_or_source}"
            f"_split-{split}_run-{run}")


def sweep_split_path(size="{size}", split="{split}"):
    return f"{PRETRAIN}/splits/task-{PRE['source_task']}_size-{size}_split-{split}_split.tsv"


def sweep_run_paths(stage, size_or_source, split="{split}", run="{run}"):
    task = PRE["source_task"] if stage == "pretrain" else PRE["target_task"]
    pre = _sweep_name(stage, task, size_or_source, split, run)
    return {k: f"{pre}_{k}.{e}" for k, e in
            (("model", "pt"), ("history", "tsv"), ("predictions", "tsv"), ("summary", "json"))}


def sweep_targets():
    if not PRE["model"]:
        return []
    mod, reg = XFER["modality"], XFER["variant"]
    return [f"{PRETRAIN}/task-{PRE['target_task']}_{mod}_desc-{reg}_model-{PRE['model']}_sweep.tsv",
            f"{FIGURES}/pretraining_task-{PRE['target_task']}_{mod}_desc-{reg}_model-{PRE['model']}_sweep."
            f"{config['figures']['format']}"]


def _finetune_settings():
    return canonical({**arm_settings(PRE["model"]), "freeze": PRE["freeze"]})


# Two runs of the sweep are runs of 000's experiment when its model and tasks are there (same settings, split
# and seed): pre-training on all of a split's training participants is the source task's transfer run, and
# fine-tuning without pre-training the target task's. Those are reused, not trained again.
FULL_SIZE = pretraining.size_label(1.0)
PRE_REUSES_SOURCE = bool(PRE["model"]) and PRE["source_task"] in XFER["tasks"]
PRE_REUSES_TARGET = (bool(PRE["model"]) and PRE["target_task"] in XFER["tasks"]
                     and _finetune_settings() == arm_settings(PRE["model"]) if PRE["model"] else False)


def sweep_pretrained(size, split, run):
    """The pre-trained model a fine-tuning run starts from."""
    if size == FULL_SIZE and PRE_REUSES_SOURCE:
        return arm_paths(PRE["source_task"], PRE["model"], split, run)["model"]
    return sweep_run_paths("pretrain", size, split, run)["model"]


def sweep_pretrain_split(size, split):
    """The split a pre-training run of ``size`` trained on (all of the split: the transfer experiment's)."""
    if size == FULL_SIZE and PRE_REUSES_SOURCE:
        return split_path(split, PRE["source_task"])
    return sweep_split_path(size, split)


def _sweep_runs():
    out = []
    for src in ["none", *SIZES]:
        for s in SPLIT_IDS:
            for r in RUN_IDS:
                files = (arm_paths(PRE["target_task"], PRE["model"], s, r) if src == "none" and PRE_REUSES_TARGET
                         else sweep_run_paths("finetune", src, s, r))
                out.append(dict(source=src, split=s, run=r, **files,
                                pretrain_split=None if src == "none" else sweep_pretrain_split(src, s)))
    return out


# ---- heatmaps and atlas aggregation -------------------------------------------------------------
HEAT = f"{RESULTS}/heatmaps"
HM = config["heatmaps"]
ATLAS = config["atlas"]
TRAIN_MODEL = config["training"]["model"]
HM_SPECS = architectures.method_specs(HM["methods"], HM)


def _heat_units():
    """(task, modality, variant, model) whose runs get heatmaps (braindl.planning.heatmap_units)."""
    for problem in planning.heatmap_problems(config):
        raise WorkflowError(f"config: {problem}")
    return planning.heatmap_units(config)


HEAT_UNITS = _heat_units()


def heat_network(model):
    """The network behind a heatmap ``model`` label (training.model, or a transfer model's)."""
    return TRAIN_MODEL if model == TRAIN_MODEL else ARMS[model]["model"]


def heat_methods(model):
    """Method labels that apply to ``model``'s network (see architectures.heatmap_refusal)."""
    return [k for k, spec in HM_SPECS.items() if not architectures.heatmap_refusal(heat_network(model), spec["method"])]


_skipped = sorted({f"{heat_network(u[3])}: {architectures.heatmap_refusal(heat_network(u[3]), s['method'])}"
                   for u in HEAT_UNITS for s in HM_SPECS.values()
                   if architectures.heatmap_refusal(heat_network(u[3]), s["method"])})
for _why in _skipped:
    print(f"heatmaps: left out for {_why}", file=sys.stderr)


wildcard_constraints:
    method="|".join(HM_SPECS) or "no-method",
    hmodel="|".join(sorted({TRAIN_MODEL, *ARMS})),


def _heat_pre(task, mod, reg, model):
    return f"{HEAT}/task-{task}/{mod}/desc-{reg}/model-{model}/task-{task}_{mod}_desc-{reg}_model-{model}"


def heatmap_paths(task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", split="{split}", run="{run}",
                  method="{method}"):
    pre = f"{_heat_pre(task, mod, reg, model)}_split-{split}_run-{run}_method-{method}"
    return {"heatmaps": f"{pre}_heatmaps.nii.gz", "index": f"{pre}_heatmaps.tsv", "json": f"{pre}_heatmaps.json"}


def heat_group_paths(task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", method="{method}"):
    pre = f"{_heat_pre(task, mod, reg, model)}_method-{method}"
    return {"groups": f"{pre}_groupmaps.nii.gz", "groups_tsv": f"{pre}_groupmaps.tsv",
            "runs": f"{pre}_runmaps.nii.gz", "runs_tsv": f"{pre}_runmaps.tsv", "meanbrain": f"{pre}_meanbrain.nii.gz"}


def heat_region_paths(task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", method="{method}"):
    pre = f"{_heat_pre(task, mod, reg, model)}_method-{method}_atlas-{_atlas_label()}"
    return {"regions": f"{pre}_regions.tsv", "summary": f"{pre}_regionsummary.tsv"}


def _atlas_label():
    return "custom" if ATLAS["image"] else ATLAS["name"]


def heat_table(kind, task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}"):
    """Robustness (pairs, summary) and ground-truth tables over the methods of one model."""
    return f"{_heat_pre(task, mod, reg, model)}_atlas-{_atlas_label()}_{kind}.tsv"


def heat_figure(kind, task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", method=None):
    m = "" if method is None else f"_method-{method}"
    return f"{FIGURES}/heatmaps_task-{task}_{mod}_desc-{reg}_model-{model}{m}_{kind}.{config['figures']['format']}"


def unit_runs(task, mod, reg, model, method):
    """Every run of one heatmap unit and method: split, run and its heatmap files."""
    return [dict(split=s, run=r, **heatmap_paths(task, mod, reg, model, s, r, method))
            for s in SPLIT_IDS for r in RUN_IDS]


def heat_runs(wc):
    return unit_runs(wc.task, wc.mod, wc.reg, wc.hmodel, wc.method)


def heat_run_files(wc):
    return [f for r in heat_runs(wc) for f in (r["heatmaps"], r["index"])]


def heat_source(wc):
    """The trained run and the data a heatmap job reads."""
    if wc.hmodel == TRAIN_MODEL:
        run = train_paths(wc.task, wc.mod, wc.reg, wc.split, wc.run)
        data = {"data": pack_paths(wc.reg, wc.mod)["volumes"], "index": pack_paths(wc.reg, wc.mod)["index"]}
    else:
        run = arm_paths(wc.task, wc.hmodel, wc.split, wc.run)
        data = {k: v for k, v in arm_files(wc.task, wc.hmodel, wc.split).items() if k != "split"}
    return {"model": run["model"], "predictions": run["predictions"], **data,
            "pack_json": pack_paths(wc.reg, wc.mod)["json"]}


def heat_layout(wc):
    """Mosaic layout of a 2D model (None for volumes)."""
    if wc.hmodel == TRAIN_MODEL or ARMS[wc.hmodel]["input"] != "mosaic":
        return None
    return canonical(LAYOUTS[ARMS[wc.hmodel]["layout"]])


def heat_settings(wc):
    """What one heatmap job reads from `heatmaps`: the disease class and its method's settings (occlusion
    patch and stride of volumes or of mosaics; the Grad-CAM layer), so that a setting reruns only the
    heatmaps it changes. The batch sizes change no map: the rule passes them as resources."""
    out = {"target_class": HM["target_class"], "device": config["training"]["device"]}
    method = HM_SPECS[wc.method]["method"]
    if method == "occlusion":
        keys = ("occlusion_patch_2d", "occlusion_stride_2d") if heat_layout(wc) else ("occlusion_patch", "occlusion_stride")
        out.update({k: HM[k] for k in keys})
    elif method == "occlusion_slice":
        out.update(occlusion_slice_window=HM["occlusion_slice_window"], occlusion_slice_stride=HM["occlusion_slice_stride"])
    elif method == "gradcam":
        out["gradcam_layer"] = HM["gradcam_layer"]
    return canonical(out)


def robustness_inputs(wc):
    """Per method of one unit: its runs' mean disease maps (and their table) and its per-run regions."""
    out = {}
    for m in heat_methods(wc.hmodel):
        groups = heat_group_paths(wc.task, wc.mod, wc.reg, wc.hmodel, m)
        out[m] = {"runs": groups["runs"], "runs_tsv": groups["runs_tsv"],
                  "regions": heat_region_paths(wc.task, wc.mod, wc.reg, wc.hmodel, m)["regions"]}
    return out


def atlas_settings():
    return canonical({k: ATLAS[k] for k in ("name", "image", "labels", "merge_hemispheres")})


def atlas_files():
    return [ATLAS["image"], ATLAS["labels"]] if ATLAS["image"] else []


def truth_mask(mod):
    """Template-space mask of the regions the target class alters in ``mod`` (synthetic cohort)."""
    effect = "atrophy" if mod == "T1w" else "hypometabolism"
    return f"{TRUTH_DIR}/tpl-{synthetic.SPACE}_dx-{HM['target_class']}_desc-{effect}_mask.nii.gz"


def heatmap_targets():
    files = []
    for task, mod, reg, model in HEAT_UNITS:
        methods = heat_methods(model)
        for method in methods:
            files += list(heat_region_paths(task, mod, reg, model, method).values())
            files += [heat_figure(k, task, mod, reg, model, method) for k in ("display", "statmap", "regions")]
        if methods:
            files += [heat_table(k, task, mod, reg, model) for k in ("robustness", "robustnesssummary")]
            files.append(heat_figure("robustness", task, mod, reg, model))
            if SYNTHETIC:
                files += [heat_table("groundtruth", task, mod, reg, model), heat_figure("localisation", task, mod, reg, model)]
    return files


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


# ---- 002's dose branch: resampling, reconstruction, patches, quality regression ---------------
DOSE = f"{RESULTS}/dose"
DCFG = config["dose"]
DTRAIN = DCFG["training"]
DOSE_LEVELS = [float(v) for v in DCFG["levels"]]
DOSE_LABELS = {patches.level_label(v): v for v in DOSE_LEVELS}
FULL_LEVEL = patches.level_label(max(DOSE_LEVELS))


def _dose_patients():
    """(subject, session) of the patients in the dose branch, and the scores table rows (real data)."""
    where = "config: dose"
    try:
        patches.group_of(DOSE_LEVELS, DCFG["groups"])
    except patches.DoseError as err:
        raise WorkflowError(str(err)) from None
    if DCFG["events_dir"] is None and "pet" not in MODALITIES:
        return [], None
    if not SYNTHETIC and not (DCFG["total_counts"] or DCFG["events_dir"] or DCFG["scores"]):
        print("dose: 002's dose branch is off for this BIDS dataset; set dose.total_counts (the full-dose "
              "events of your PET), dose.events_dir or dose.scores to run it", file=sys.stderr)
        return [], None
    if DCFG["scores"]:
        try:
            table = patches.read_scores(DCFG["scores"], DOSE_LEVELS)
        except patches.DoseError as err:
            raise WorkflowError(f"{where}.scores: {err}") from None
        pairs = sorted({(p[4:], s) for p, s in zip(table.participant_id, table.session_id)})
    else:
        if not SYNTHETIC and DTRAIN["models"]:
            print("dose: no dose.scores for this BIDS dataset: reconstructions only, no quality regression",
                  file=sys.stderr)
        table, pairs, seen = None, [], set()
        for sub, ses in sorted(session_pairs()):
            if sub not in seen and (DCFG["events_dir"] or (sub, ses, "pet") in RAW):
                seen.add(sub)
                pairs.append((sub, ses))
        pairs = pairs[: DCFG["patients"]] if DCFG["patients"] else pairs
    for sub, ses in pairs:
        if DCFG["events_dir"] is None and (sub, ses, "pet") not in RAW:
            raise WorkflowError(f"{where}.scores: sub-{sub} ses-{ses} has no PET scan in {BIDS_DIR}")
    return pairs, table


DOSE_PAIRS, DOSE_SCORE_TABLE = _dose_patients()
# the quality regression needs labels: the synthetic rule's, or a scores table
DOSE_REGRESSION = bool(DTRAIN["models"] and DOSE_PAIRS and (SYNTHETIC or DOSE_SCORE_TABLE is not None))


def dose_scored():
    """(subject, session, level label) of every scored reconstruction: the scores table's rows, or
    (synthetic) one level per quality group and patient, drawn by patches.scored_levels."""
    if DOSE_SCORE_TABLE is not None:
        return [(p[4:], s, patches.level_label(v)) for p, s, v in
                DOSE_SCORE_TABLE[["participant_id", "session_id", "level"]].itertuples(index=False)]
    return [(sub, ses, patches.level_label(v)) for sub, ses in DOSE_PAIRS
            for v in patches.scored_levels(f"sub-{sub}", DOSE_LEVELS, DCFG["groups"], DCFG["seed"])]


def _check_dose():
    if not DOSE_REGRESSION:
        return
    where = "config: dose.training"
    for problem in planning.dose_training_problems(len(DOSE_PAIRS), DTRAIN):
        raise WorkflowError(f"{where}: {problem}")
    for name in DTRAIN["models"]:
        if name not in architectures.BACKBONES:
            raise WorkflowError(f"{where}.models: {name!r} is not a 2D backbone ({sorted(architectures.BACKBONES)})")
        if DTRAIN["weights"] != "none" and not architectures.weights_path(name, DTRAIN["weights"]).is_file():
            raise WorkflowError(f"{where}.weights {DTRAIN['weights']}: "
                                f"{architectures.weights_path(name, DTRAIN['weights'])} not found")


_check_dose()


def dose_dir(subject="{subject}", session="{session}"):
    return f"{DOSE}/sub-{subject}/ses-{session}/pet/sub-{subject}_ses-{session}"


def dose_counts_paths(subject="{subject}", session="{session}"):
    pre = dose_dir(subject, session)
    return {"counts": f"{pre}_desc-counts_sinogram.npz", "json": f"{pre}_desc-counts_sinogram.json"}


def dose_recon_paths(subject="{subject}", session="{session}", level="{level}"):
    pre = dose_dir(subject, session)
    return {"pet": f"{pre}_desc-dose{level}_pet.nii.gz", "json": f"{pre}_desc-dose{level}_pet.json"}


def dose_patch_paths(subject="{subject}", session="{session}", level="{level}"):
    pre = dose_dir(subject, session)
    return {"patches": f"{pre}_desc-dose{level}_patches.npy", "json": f"{pre}_desc-dose{level}_patches.json"}


def dose_source(wc):
    """The events file of a scan (dose.events_dir), else its PET image."""
    if DCFG["events_dir"]:
        return f"{DCFG['events_dir']}/sub-{wc.subject}_ses-{wc.session}_events.npy"
    return RAW[(wc.subject, wc.session, "pet")]


DOSE_SCORES = f"{DOSE}/quality_scores.tsv"
try:
    DOSE_FOLDS = patches.quality_folds([f"sub-{s}" for s, _ in DOSE_PAIRS], DTRAIN["test_patients"],
                                       DTRAIN["validation_patients"], DTRAIN["folds"], DCFG["seed"]) \
        if DOSE_REGRESSION else []
except patches.DoseError as _err:
    raise WorkflowError(f"config: {_err}") from None


def dose_run_paths(model="{dmodel}", freeze="{freeze}", n="{n}", fold="{fold}", run="{run}"):
    pre = f"{DOSE}/models/model-{model}_freeze-{freeze}_n-{n}_fold-{fold}_run-{run}"
    return {"predictions": f"{pre}_predictions.tsv", "history": f"{pre}_history.tsv",
            "summary": f"{pre}_summary.json"}


def dose_runs():
    """Every quality run (braindl.planning.dose_runs)."""
    return planning.dose_runs(DTRAIN, DOSE_REGRESSION)


def dose_train_settings(wc):
    return canonical(planning.dose_train_settings(DCFG, wc.dmodel, wc.freeze, config["training"]["device"]))


def dose_patch_inputs(wc):
    """Patches of the scored reconstructions of the fold's training (first n), validation and test
    patients, keyed by (participant_id, session_id, level)."""
    fold = DOSE_FOLDS[int(wc.fold)]
    members = set(fold["pool"][: int(wc.n)] + fold["validation"] + fold["test"])
    return {(f"sub-{s}", t, DOSE_LABELS[lv]): dose_patch_paths(s, t, lv)["patches"] for s, t, lv in dose_scored()
            if f"sub-{s}" in members}


def dose_seed(*parts):
    """A seed of its own per scan (and level), from dose.seed."""
    return planning.dose_seed(DCFG["seed"], *parts)


DOSE_TABLE = f"{DOSE}/quality_runs.tsv"


def dose_figure(kind):
    return f"{FIGURES}/dose_{kind}.{config['figures']['format']}"


def dose_targets():
    if not DOSE_PAIRS:
        return []
    sub, ses = DOSE_PAIRS[0]
    files = [dose_figure("levels")]
    files += [dose_recon_paths(s, t, lv)["pet"] for s, t in DOSE_PAIRS for lv in DOSE_LABELS]
    if DOSE_REGRESSION:
        files += [DOSE_TABLE, dose_figure("training_size"), dose_figure("freezing")]
    return files
