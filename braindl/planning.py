"""Planning: which jobs exist, with which settings, and the config checks that stop a run before any
job; it acts on the whole config and imports neither torch nor Snakemake.

Snakemake loads ``config.yaml`` first and merges every ``--configfile`` into it, so a named
config adds to a dict of config.yaml but cannot take a key out of it. The dicts whose keys
name things (models, layouts, crop boxes, quality groups, external datasets) therefore accept
``name: null``: the entry is removed before the config is validated (:func:`drop_removed`), as
if config.yaml had never had it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: dicts of config.yaml whose entries a named config may remove with ``name: null``
NAMED_DICTS = (
    ("transfer", "models"),
    ("mosaic", "layouts"),
    ("crop", "box"),
    ("dose", "groups"),
    ("external", "datasets"),
)


def drop_removed(config: dict) -> list[str]:
    """Remove, in place, every entry set to null in the dicts of :data:`NAMED_DICTS`; returns the
    removed entries as ``section.key.name``."""
    removed = []
    for path in NAMED_DICTS:
        node = config
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        for name in [k for k, v in node.items() if v is None]:
            del node[name]
            removed.append(".".join((*path, str(name))))
    return removed


# ---- the dataset: its scans and sessions --------------------------------------------------------------
@dataclass
class Selection:
    """The scans a run uses, chosen at parse time without reading an image.

    ``scans``: one row per scan (participant_id, session_id, modality, path); ``bids_dir``: the dataset;
    ``cohort``: the synthetic cohort's table (None for a user's dataset); ``diagnoses``: the synthetic
    cohort's diagnoses; ``sessions``: the modalities of each (subject, session), in dataset.modalities
    order; ``modality_sets``: their distinct sets, largest first (each per-session rule has one variant
    per set).
    """

    bids_dir: str
    scans: "pd.DataFrame"
    cohort: "pd.DataFrame | None"
    diagnoses: list
    sessions: dict
    modality_sets: list


def dataset_selection(config: dict, cache_dir=None) -> Selection:
    """The selected scans of the run: the synthetic cohort's (``dataset.bids_dir`` null) or those of a
    user's BIDS dataset after its filters (:func:`braindl.inputs.discover`; a missing file or broken
    link is left out, so that Snakemake does not stop on it before ``check_inputs`` names it).

    Raises ValueError when the synthetic cohort has a diagnosis that ``dataset.diagnoses`` lacks.
    """
    import pandas as pd

    from braindl import inputs, synthetic

    dataset, mods = config["dataset"], config["dataset"]["modalities"]
    route = config["registration"]["pet_route"]
    if dataset["bids_dir"] is None:
        # a group of 0 subjects (MS by default) need not be a diagnosis of the dataset
        unknown = sorted(set(synthetic.cohort_diagnoses(config["synthetic"])) - set(dataset["diagnoses"]))
        if unknown:
            raise ValueError(f"synthetic.groups has subjects of diagnoses {unknown} missing from dataset.diagnoses")
        bids_dir = f"{config['results_dir']}/synthetic/bids"
        cohort = synthetic.cohort_table(config["synthetic"])
        diagnoses = synthetic.cohort_diagnoses(config["synthetic"])
        scans = pd.DataFrame(
            [dict(participant_id=row.participant_id, session_id=ses, modality=m,
                  path=str(synthetic.raw_paths(bids_dir, row.participant_id[4:], ses)[m]))
             for row in cohort.itertuples() for ses in synthetic.session_labels(row.n_sessions) for m in mods],
            columns=["participant_id", "session_id", "modality", "path"])
    else:
        bids_dir, cohort, diagnoses = dataset["bids_dir"], None, []
        # files only, never a crash on a user's file: check_inputs reports every problem
        found = inputs.discover(bids_dir, mods, dataset["filters"], dataset["runs"], dataset["participants"],
                                route, cache_dir=cache_dir)
        scans = inputs.existing_scans(found.scans, mods, route)
    sessions = inputs.session_modalities(scans, mods)
    sets = sorted(set(sessions.values()), key=lambda s: (-len(s), s)) or [tuple(mods)]
    return Selection(bids_dir, scans, cohort, diagnoses, sessions, sets)


# ---- checks across settings (the schema checks each setting alone) -----------------------------------
def config_problems(config: dict) -> list[str]:
    """What stops a run before any job, beyond the schema: the PET route, the crop boxes and the
    training settings that depend on other settings or on files (each a sentence naming the keys)."""
    from pathlib import Path

    from braindl import architectures

    out = []
    mods, training = config["dataset"]["modalities"], config["training"]
    if config["registration"]["pet_route"] == "via_t1" and "pet" in mods and "T1w" not in mods:
        out.append("registration.pet_route via_t1 needs T1w in dataset.modalities; use pet_template for "
                   "PET-only data")
    presets, boxes = config["crop"]["preset"], config["crop"]["box"]
    missing = sorted(set(mods) - set(presets))
    if missing:
        out.append(f"crop.preset has no box for modality {missing}")
    out += [f"crop.preset.{mod} = {name!r} is not one of crop.box {sorted(boxes)}"
            for mod, name in presets.items() if name not in boxes]
    untrained = sorted(set(training["modalities"]) - set(mods))
    if untrained:
        out.append(f"training.modalities {untrained} are not in dataset.modalities {mods}")
    if training["finetune_from"] is not None and training["finetune_from"] not in training["tasks"]:
        out.append(f"training.finetune_from {training['finetune_from']!r} is not one of training.tasks "
                   f"{training['tasks']}")
    if training["pretrained"] and not Path(training["pretrained"]).is_file():
        out.append(f"training.pretrained {training['pretrained']}: file not found")
    for mod in training["modalities"]:
        preset = presets.get(mod)
        if preset not in boxes:
            continue
        try:
            architectures.check_3d_input(training["model"], boxes[preset]["shape"], training["input_pool"])
        except ValueError as err:
            out.append(f"training.model on the {mod} crop (crop.box.{preset}): {err}; lower training.input_pool "
                       "or enlarge the box")
    return out


# ---- 002's dose branch ------------------------------------------------------------------------------
@dataclass
class DosePlan:
    """The dose branch's patients: ``pairs`` (subject, session) labels, ``scores`` the user's scores table
    (None: the synthetic rule's labels), ``notes`` what the user should be told at parse time."""

    pairs: list
    scores: "pd.DataFrame | None"
    notes: list


def dose_patients(config: dict, selection: Selection) -> DosePlan:
    """The patients of 002's dose branch: those of ``dose.scores`` (a user's quality scores), or the first
    ``dose.patients`` participants with a PET scan (their first such session; every participant when
    ``dose.events_dir`` holds their list-mode files). The branch is off without PET, and for a BIDS
    dataset unless ``dose.total_counts``, ``dose.events_dir`` or ``dose.scores`` says what to resample.

    Raises ValueError (naming the setting) for bad quality groups, an unreadable scores table, or a
    scored session without a PET scan.
    """
    from braindl import patches

    dose, training = config["dose"], config["dose"]["training"]
    levels = [float(v) for v in dose["levels"]]
    synthetic = config["dataset"]["bids_dir"] is None
    try:
        patches.group_of(levels, dose["groups"])
    except patches.DoseError as err:
        raise ValueError(str(err)) from None
    if dose["events_dir"] is None and "pet" not in config["dataset"]["modalities"]:
        return DosePlan([], None, [])
    if not synthetic and not (dose["total_counts"] or dose["events_dir"] or dose["scores"]):
        return DosePlan([], None, ["dose: 002's dose branch is off for this BIDS dataset; set dose.total_counts "
                                   "(the full-dose events of your PET), dose.events_dir or dose.scores to run it"])
    has_pet = {(p[4:], ses) for p, ses, m in selection.scans[["participant_id", "session_id", "modality"]]
               .itertuples(index=False) if m == "pet"}
    notes = []
    if dose["scores"]:
        try:
            table = patches.read_scores(dose["scores"], levels)
        except patches.DoseError as err:
            raise ValueError(f"dose.scores: {err}") from None
        pairs = sorted({(p[4:], s) for p, s in zip(table.participant_id, table.session_id)})
    else:
        if not synthetic and training["models"]:
            notes.append("dose: no dose.scores for this BIDS dataset: reconstructions only, no quality regression")
        table, pairs, seen = None, [], set()
        for sub, ses in sorted(selection.sessions):
            if sub not in seen and (dose["events_dir"] or (sub, ses) in has_pet):
                seen.add(sub)
                pairs.append((sub, ses))
        pairs = pairs[: dose["patients"]] if dose["patients"] else pairs
    for sub, ses in pairs:
        if dose["events_dir"] is None and (sub, ses) not in has_pet:
            raise ValueError(f"dose.scores: sub-{sub} ses-{ses} has no PET scan in {selection.bids_dir}")
    return DosePlan(pairs, table, notes)


def dose_model_problems(training: dict) -> list[str]:
    """Models of ``dose.training`` that are no 2D backbone, or whose weights file is missing."""
    from braindl import architectures

    out = []
    for name in training["models"]:
        if name not in architectures.BACKBONES:
            out.append(f"dose.training.models: {name!r} is not a 2D backbone ({sorted(architectures.BACKBONES)})")
        elif training["weights"] != "none" and not architectures.weights_path(name, training["weights"]).is_file():
            out.append(f"dose.training.weights {training['weights']}: "
                       f"{architectures.weights_path(name, training['weights'])} not found")
    return out


def dose_runs(training: dict, enabled: bool = True) -> list[dict]:
    """Every image-quality run of ``dose.training``: models x regimes x sizes x folds (run 0 each), plus
    the extra runs of the ensemble on fold 0 (002: "an ensemble of 5 runs on one fold")."""
    if not enabled:
        return []
    return [dict(model=m, freeze=r, n=n, fold=f, run=run)
            for m in training["models"] for r in training["regimes"] for n in training["sizes"]
            for f, run in _fold_runs(training)]


def _fold_runs(training: dict) -> list[tuple[int, int]]:
    """(fold, run) of one backbone, regime and size: fold 0's ensemble runs, then one run per other fold."""
    return [(f, run) for f in range(training["folds"]) for run in range(training["ensemble_runs"] if f == 0 else 1)]


def dose_job_runs(training: dict, mode: str, n: str = "{n}", fold: str = "{fold}",
                  run: str = "{run}") -> list[tuple[str, str, str]]:
    """The (size, fold, run) of one job of a backbone and regime's image-quality runs (:func:`dose_runs`),
    in order, under ``resources.training_job_runs`` (``mode``, as :func:`job_runs`): every run of the
    backbone and regime (``unit``: one process, torch imported once), the folds and runs of one training
    size (``split``: fold 0 holds the ensemble's runs and the other folds one each, so one size's runs are
    the regular part of the grid), or one run (``run``). Without a job's values the entries hold the
    wildcards of the rule's outputs. Every mode covers each run of :func:`dose_runs` exactly once."""
    folds = [(str(f), str(r)) for f, r in _fold_runs(training)]
    if mode == "unit":
        return [(str(s), f, r) for s in training["sizes"] for f, r in folds]
    if mode == "split":
        return [(n, f, r) for f, r in folds]
    if mode == "run":
        return [(n, fold, run)]
    raise ValueError(f"resources.training_job_runs: {mode!r} is none of {', '.join(JOB_RUNS)}")


def dose_job_label(mode: str) -> str:
    """The wildcards that tell one dose regression job's log from another's of its backbone and regime
    (the wildcards of :func:`dose_job_runs`' entries)."""
    runs = dose_job_runs({"sizes": [1], "folds": 1, "ensemble_runs": 1}, mode)
    return "".join(f"_{k}-{{{k}}}" for i, k in enumerate(("n", "fold", "run")) if any("{" in r[i] for r in runs))


#: the ``dose`` settings each per-scan step of the dose branch reads (its rule's ``params: settings``), so
#: that a setting reruns only the steps it changes
DOSE_STEP_SETTINGS = {
    "resample": ("levels", "angles", "voxel_size_mm", "matrix"),
    "reconstruct": ("iterations", "subsets", "postfilter_fwhm_mm"),
    "patches": ("patch_size", "patches_per_plane", "candidates_per_plane", "background_fraction"),
}


def dose_step_settings(dose: dict, step: str) -> dict:
    """The ``dose`` settings of one step of the dose branch (:data:`DOSE_STEP_SETTINGS`)."""
    return {k: dose[k] for k in DOSE_STEP_SETTINGS[step]}


def dose_seed(seed: int, *parts: str) -> int:
    """A seed of its own per scan (and level): ``seed`` plus the CRC32 of the parts, so that adding a
    patient changes no other patient's draws."""
    import zlib

    return int(seed) + zlib.crc32("_".join(parts).encode()) % 100000


def dose_training_problems(n_patients: int, training: dict) -> list[str]:
    """What stops ``dose.training`` with ``n_patients`` dose patients (empty: nothing)."""
    need = training["test_patients"] + training["validation_patients"] + max(training["sizes"])
    if n_patients < need:
        return [f"{n_patients} dose patients, but test_patients + validation_patients + max(sizes) = {need}"]
    return []


def dose_train_settings(dose: dict, model: str, freeze: str, device: str) -> dict:
    """What one image-quality run reads of ``dose`` (and ``training.device``): its params."""
    t = dose["training"]
    return {"model": model, "freeze": freeze, "weights": t["weights"], "learning_rate": t["learning_rate"],
            "batch_size": t["batch_size"], "max_epochs": t["max_epochs"], "early_stopping_patience": t["patience"],
            "seed": dose["seed"], "device": device}


# ---- training: what each run reads of the config ------------------------------------------------------
def training_settings(config: dict) -> dict:
    """The 3D runs' settings as the ``train`` rule sees them: ``training`` without the task and modality
    lists, and without the PIF layer's settings unless the network has one (they rerun only PIF networks)."""
    from braindl.architectures import PIF_MODELS

    skip = {"tasks", "modalities", "finetune_from"}
    if config["training"]["model"] not in PIF_MODELS:
        skip |= {"pif_grid", "pif_filters"}
    return {k: v for k, v in config["training"].items() if k not in skip}


def transfer_arm_settings(config: dict, arm: str) -> dict:
    """Training settings of one model of ``transfer.models``: ``training``, then for a 2D model on mosaics
    ``transfer.defaults_2d`` (and ``mosaic.rgb``; no ``input_pool``, a 3D setting), then the model's own
    keys (not its layout: that is the data, not a setting)."""
    from braindl.architectures import PIF_MODELS

    spec = config["transfer"]["models"][arm]
    skip = {"tasks", "modalities", "finetune_from", "pretrained", "freeze"}
    settings = {k: v for k, v in config["training"].items() if k not in skip}
    settings.update(pretrained=None, freeze="none")
    if spec["input"] == "mosaic":
        settings.pop("input_pool")
        settings.update(config["transfer"]["defaults_2d"], rgb=config["mosaic"]["rgb"])
    settings.update({k: v for k, v in spec.items() if k != "layout"})
    if settings["model"] not in PIF_MODELS:
        settings.pop("pif_grid", None), settings.pop("pif_filters", None)
    return settings


def sweep_reuse(config: dict) -> tuple[bool, bool]:
    """Which runs of 001's pre-training sweep are runs of 000's transfer experiment (same model, settings,
    split and seed), reused rather than trained again: (pre-training on all of a split's training
    participants is the source task's transfer run, fine-tuning without pre-training is the target task's
    when the sweep's ``freeze`` changes no setting)."""
    pre, tasks = config["pretraining"], config["transfer"]["tasks"]
    if not pre["model"]:
        return False, False
    settings = transfer_arm_settings(config, pre["model"])
    same = {**settings, "freeze": pre["freeze"]} == settings
    return pre["source_task"] in tasks, pre["target_task"] in tasks and same


# ---- heatmaps -------------------------------------------------------------------------------------------
def transfer_models(config: dict) -> dict:
    """The transfer experiment's models in use (none when it has no task)."""
    return config["transfer"]["models"] if config["transfer"]["tasks"] else {}


def heatmap_problems(config: dict) -> list[str]:
    """What is wrong with the ``heatmaps`` section given the rest of the config (empty: nothing); checked
    only when heatmaps are on (``heatmaps.tasks``)."""
    from braindl.splits import task_classes

    hm, xf, tr = config["heatmaps"], config["transfer"], config["training"]
    if not hm["tasks"]:
        return []
    for key, have, name in (("tasks", tr["tasks"] + xf["tasks"], "training.tasks or transfer.tasks"),
                            ("variants", config["registration"]["variants"], "registration.variants"),
                            ("transfer_models", list(transfer_models(config)), "transfer.models")):
        missing = sorted(set(hm[key]) - set(have))
        if missing:
            return [f"heatmaps.{key} {missing} are not in {name} {sorted(set(have))}"]
    if hm["transfer_models"] and tr["model"] in hm["transfer_models"]:
        return [f"heatmaps.transfer_models: {tr['model']!r} is also training.model; rename the transfer model"]
    if hm["transfer_models"] and xf["variant"] == "none":
        return ["heatmaps.transfer_models: transfer.variant none has no common space for group maps"]
    for task in hm["tasks"]:
        classes = task_classes(task)
        for key in ("target_class", "control_class"):
            if hm[key] not in classes:
                return [f"heatmaps.{key} {hm[key]!r} is not a class of task {task} {classes}"]
    if "occlusion_slice" in hm["methods"] and hm["occlusion_slice_stride"] > min(hm["occlusion_slice_window"]):
        return [f"heatmaps.occlusion_slice_stride {hm['occlusion_slice_stride']} is larger than the window's "
                f"smaller side {min(hm['occlusion_slice_window'])}: some voxels would never be hidden"]
    groups = [hm["target_class"], hm["control_class"], "TP", "FP", "TN", "FN"]
    if hm["display_group"] not in groups:
        return [f"heatmaps.display_group {hm['display_group']!r} is not one of {groups}"]
    return []


def heatmap_units(config: dict) -> list[tuple[str, str, str, str]]:
    """(task, modality, variant, model) whose runs get heatmaps: the 3D runs (model = ``training.model``)
    of heatmaps.tasks x training.modalities x heatmaps.variants, and the models of
    ``heatmaps.transfer_models`` on the transfer experiment's modality and variant."""
    hm, xf, tr = config["heatmaps"], config["transfer"], config["training"]
    if not hm["tasks"]:
        return []
    units = [(t, m, v, tr["model"]) for t in hm["tasks"] if t in tr["tasks"] for m in tr["modalities"]
             for v in hm["variants"]]
    units += [(t, xf["modality"], xf["variant"], a) for t in hm["tasks"] if t in xf["tasks"]
              for a in hm["transfer_models"]]
    return units


def heatmap_network(config: dict, model: str) -> str:
    """The network behind a heatmap ``model`` label: ``training.model``, or a transfer model's network."""
    return config["training"]["model"] if model == config["training"]["model"] else \
        config["transfer"]["models"][model]["model"]


def heatmap_methods(config: dict, model: str, labels=None) -> list[str]:
    """The method labels of ``labels`` (default: ``heatmaps.methods``) that apply to ``model``'s network,
    in order: a method the network refuses (:func:`braindl.architectures.heatmap_refusal`, e.g. LRP on
    a network with skip connections) is left out for that model only."""
    from braindl.architectures import heatmap_refusal, method_specs

    hm = config["heatmaps"]
    network = heatmap_network(config, model)
    return [k for k, spec in method_specs(hm["methods"] if labels is None else labels, hm).items()
            if not heatmap_refusal(network, spec["method"])]


# ---- the transfer experiment (000) and the pre-training sweep (001) -------------------------------------
def heatmap_settings(config: dict, model: str, label: str) -> dict:
    """What one heatmap job of ``model`` and method ``label`` reads from ``heatmaps``: the disease class,
    the device and its method's own settings (occlusion patch and stride of volumes, or of mosaics for
    a 2D model; the slice window of 000's occlusion; the Grad-CAM layer), so that a setting reruns only
    the heatmaps it changes. The batch sizes change no map: they are not here."""
    from braindl.architectures import method_specs

    hm = config["heatmaps"]
    out = {"target_class": hm["target_class"], "device": config["training"]["device"]}
    method = method_specs(hm["methods"], hm)[label]["method"]
    mosaic = model != config["training"]["model"] and transfer_models(config)[model]["input"] == "mosaic"
    if method == "occlusion":
        keys = ("occlusion_patch_2d", "occlusion_stride_2d") if mosaic else ("occlusion_patch", "occlusion_stride")
        out.update({k: hm[k] for k in keys})
    elif method == "occlusion_slice":
        out.update(occlusion_slice_window=hm["occlusion_slice_window"],
                   occlusion_slice_stride=hm["occlusion_slice_stride"])
    elif method == "gradcam":
        out["gradcam_layer"] = hm["gradcam_layer"]
    return out


def crop_settings(config: dict) -> dict:
    """The crop settings of the dataset's modalities: their presets, those presets' boxes and the
    normalisation (the boxes of other presets rerun no crop)."""
    preset = {m: config["crop"]["preset"][m] for m in config["dataset"]["modalities"]}
    return {"preset": preset, "box": {name: config["crop"]["box"][name] for name in preset.values()},
            "normalisation": config["crop"]["normalisation"]}


def transfer_problems(config: dict) -> list[str]:
    """What stops the transfer experiment before any job runs (empty: nothing): its modality and variant,
    its ROC and embedding tasks, each model's input against its network, a 3D network's depth against the
    crop, a 2D model's layout on the crop, and ImageNet weights that are not on disk."""
    from braindl import architectures, mosaic

    arms, xf = transfer_models(config), config["transfer"]
    if not arms:
        return []
    mods, variants = config["dataset"]["modalities"], config["registration"]["variants"]
    layouts = config["mosaic"]["layouts"]
    if xf["modality"] not in mods:
        return [f"transfer.modality {xf['modality']!r} is not in dataset.modalities {mods}"]
    if xf["variant"] not in variants:
        return [f"transfer.variant {xf['variant']!r} is not in registration.variants {variants}"]
    for key in ("roc_task", "embedding_task"):
        if xf[key] is not None and xf[key] not in xf["tasks"]:
            return [f"transfer.{key} {xf[key]!r} is not one of transfer.tasks {xf['tasks']}"]
    box = config["crop"]["box"][config["crop"]["preset"][xf["modality"]]]["shape"]
    for name, arm in arms.items():
        is2d = arm["model"] in architectures.BACKBONES
        if is2d != (arm["input"] == "mosaic"):
            return [f"transfer.models.{name}: model {arm['model']} takes {'mosaic' if is2d else 'volume'} input, "
                    f"not {arm['input']}"]
        if not is2d:
            try:
                architectures.check_3d_input(arm["model"], box, arm.get("input_pool", config["training"]["input_pool"]))
            except ValueError as err:
                return [f"transfer.models.{name} on the {xf['modality']} crop: {err}; lower its input_pool or "
                        "enlarge the box"]
            continue
        layout = arm.get("layout")
        if layout not in layouts:
            return [f"transfer.models.{name}: layout {layout!r} is not one of mosaic.layouts {sorted(layouts)}"]
        try:
            mosaic.mosaic_shape(box, layouts[layout], config["mosaic"]["scale"])
        except mosaic.LayoutError as err:
            return [f"transfer.models.{name}: layout {layout} on the {box} crop: {err}"]
        weights = arm.get("weights", xf["defaults_2d"]["weights"])
        if weights != "none" and not architectures.weights_path(arm["model"], weights).is_file():
            return [f"transfer.models.{name}: weights {weights}: {architectures.weights_path(arm['model'], weights)} "
                    "not found"]
    return []


def pretraining_problems(config: dict) -> list[str]:
    """What stops 001's pre-training sweep (empty: nothing, or the sweep is off)."""
    pre = config["pretraining"]
    if not pre["model"]:
        return []
    arms = transfer_models(config)
    if pre["model"] not in arms:
        return [f"pretraining.model {pre['model']!r} is not one of transfer.models {sorted(arms)}"]
    if pre["source_task"] == pre["target_task"]:
        return ["pretraining.source_task and target_task must differ"]
    return []


# ---- splits: which tasks need them, from which modalities ----------------------------------------------
def split_ids(config: dict) -> list[str]:
    """The labels of the splits (``01`` ...) of ``splits.n_splits``."""
    return [f"{k:02d}" for k in range(1, config["splits"]["n_splits"] + 1)]


def run_ids(config: dict) -> list[str]:
    """The labels of the repeated runs per split (``01`` ...) of ``splits.n_repeats``."""
    return [f"{r:02d}" for r in range(1, config["splits"]["n_repeats"] + 1)]


#: what one job of a unit's trained runs holds (``heatmaps.job_runs``, ``resources.training_job_runs``):
#: every run of its unit, the repeats of one split, or one run
JOB_RUNS = ("unit", "split", "run")


def job_runs(mode: str, splits: list[str], runs: list[str], split: str = "{split}", run: str = "{run}",
             setting: str = "heatmaps.job_runs") -> list[tuple[str, str]]:
    """The (split, run) pairs one job of a unit computes, in order: all of the unit's (``mode`` ``unit``:
    one process, torch and MONAI imported once), those of ``split`` (``split``), or ``(split, run)``
    alone (``run``: the most jobs, for a cluster's parallel GPUs). A unit is what the runs share: a heatmap
    job's task, modality, variant, model and method; a training job's task, modality, variant and model.
    With the default ``split`` and ``run`` the pairs hold the wildcards of the rule's outputs; with a
    job's values, the runs it reads. Every mode covers each run exactly once over its jobs. ``setting``
    names the config key in the error for an unknown mode."""
    if mode == "unit":
        return [(s, r) for s in splits for r in runs]
    if mode == "split":
        return [(split, r) for r in runs]
    if mode == "run":
        return [(split, run)]
    raise ValueError(f"{setting}: {mode!r} is none of {', '.join(JOB_RUNS)}")


def job_label(mode: str) -> str:
    """The wildcards that tell one job's log from another's of its unit: the parts of :func:`job_runs`'
    pairs that are wildcards (``_split-{split}``, ...; nothing for ``unit``)."""
    pairs = job_runs(mode, ["01"], ["01"])
    return "".join(f"_{k}-{{{k}}}" for k in ("split", "run") if any(f"{{{k}}}" in p for p in pairs))


def split_tasks(config: dict) -> list[str]:
    """Every task that needs splits, in order: the 3D runs', the transfer experiment's, the pre-training
    sweep's two, study 5's and study 2's (its source task and CN vs MS)."""
    from braindl.msstudy import TARGET_TASK

    pre, pif, ms = config["pretraining"], config["pif_study"], config["ms_study"]
    tasks = (config["training"]["tasks"] + config["transfer"]["tasks"]
             + ([pre["source_task"], pre["target_task"]] if pre["model"] else []) + pif["tasks"]
             + ([ms["source_task"], TARGET_TASK] if ms["enabled"] else []))
    return list(dict.fromkeys(tasks))


def split_modalities(config: dict, task: str) -> list[str]:
    """The modalities trained on ``task`` (3D runs, transfer models, pre-training sweep, studies 5 and 2):
    its splits are made from the sessions whose scans of these passed QC."""
    from braindl.msstudy import TARGET_TASK

    tr, xf, pre, pif, ms = (config[k] for k in ("training", "transfer", "pretraining", "pif_study", "ms_study"))
    mods = list(tr["modalities"]) if task in tr["tasks"] else []
    if (transfer_models(config) and task in xf["tasks"]) or (pre["model"] and task in (pre["source_task"],
                                                                                       pre["target_task"])):
        mods.append(xf["modality"])
    if task in pif["tasks"]:
        mods.append(pif["modality"])
    if ms["enabled"] and task in (ms["source_task"], TARGET_TASK):
        mods.append(ms["modality"])
    return sorted(set(mods))


# ---- the thesis' studies 5 (PIF) and 2 (AD to MS) ------------------------------------------------------
def study_problems(config: dict) -> list[str]:
    """What stops study 5 or study 2 at parse time (empty: nothing, or both off): its variant and modality
    must be the dataset's, and its networks must fit the modality's crop after ``training.input_pool``."""
    from braindl import architectures, pifstudy

    problems = []
    studies = (("pif_study", bool(config["pif_study"]["tasks"]), sorted(set(pifstudy.MODELS.values()))),
               ("ms_study", bool(config["ms_study"]["enabled"]), [config["ms_study"]["model"]]))
    for name, on, models in studies:
        study = config[name]
        if not on:
            continue
        if study["variant"] not in config["registration"]["variants"]:
            problems.append(f"{name}.variant {study['variant']!r} is not one of registration.variants "
                            f"{config['registration']['variants']}")
        if study["modality"] not in config["dataset"]["modalities"]:
            problems.append(f"{name}.modality {study['modality']!r} is not one of dataset.modalities "
                            f"{config['dataset']['modalities']}")
            continue
        shape = config["crop"]["box"][config["crop"]["preset"][study["modality"]]]["shape"]
        for model in models:
            try:
                architectures.check_3d_input(model, shape, config["training"]["input_pool"])
            except ValueError as err:
                problems.append(f"{name} on the {study['modality']} crop: {err}; lower training.input_pool")
                break
    return problems
