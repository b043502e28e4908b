"""The workflow's one path layout (BIDS derivatives): where each session's artifacts live, and the
splits, packs, mosaics, training runs, evaluation tables, heatmaps and dose branch built from them.

Every function takes the results folder (``config["results_dir"]``, or any folder a
benchmark or test writes to) and returns the paths of one job's outputs, so the
rules (``rules/*.smk``), :mod:`braindl.accuracy` and the benchmarks write the same
tree. Labels are given without their prefix (``sub="001"``, ``ses="01"``); a
Snakemake wildcard such as ``"{subject}"`` may stand for any of them.

    results/inputs/sub-001/ses-01/sub-001_ses-01_scans.tsv
    results/extraction/sub-001/ses-01/anat/sub-001_ses-01_desc-brain_mask.nii.gz
    results/registration/sub-001/ses-01/anat/sub-001_ses-01_space-<tpl>_desc-syn_T1w.nii.gz
    results/skullstrip/sub-001/ses-01/anat/sub-001_ses-01_desc-syn_T1w.nii.gz
    results/crop/sub-001/ses-01/anat/sub-001_ses-01_desc-syn_T1w.nii.gz
    results/qc/desc-syn_qc.tsv
    results/pack/desc-syn_T1w_volumes.npy
    results/training/task-CN_vs_AD/T1w/desc-syn/task-CN_vs_AD_desc-syn_split-01_run-01_model.pt
    results/heatmaps/task-CN_vs_AD/T1w/desc-syn/model-cnn3d/<unit>_split-01_run-01_method-lrpepsilon_heatmaps.nii.gz
    results/dose/sub-001/ses-01/pet/sub-001_ses-01_desc-dose10_pet.nii.gz

Imports neither torch nor Snakemake.
"""

from __future__ import annotations

from pathlib import Path

from braindl.templates import TEMPLATE_SPACE

SPACE = TEMPLATE_SPACE
# BIDS datatype folder of each modality
FOLDER = {"T1w": "anat", "pet": "pet"}


def _session_dir(results, stage: str, sub: str, ses: str, mod: str | None = None) -> Path:
    d = Path(results) / stage / f"sub-{sub}" / f"ses-{ses}"
    return d / FOLDER[mod] if mod else d


def _prefix(sub: str, ses: str) -> str:
    return f"sub-{sub}_ses-{ses}"


def manifest(results) -> str:
    """The checked list of every scan the workflow uses (rule check_inputs)."""
    return str(Path(results) / "inputs" / "manifest.tsv")


def session_scans(results, sub: str, ses: str) -> str:
    """The scans of one session the workflow uses (rule session_scans)."""
    return str(_session_dir(results, "inputs", sub, ses) / f"{_prefix(sub, ses)}_scans.tsv")


def modality_sessions(results, mod: str) -> str:
    """The sessions with a scan of ``mod`` and the digest of their data (rule modality_sessions)."""
    return str(Path(results) / "inputs" / f"desc-{mod}_sessions.tsv")


def extraction(results, sub: str, ses: str, modalities, pet_route: str) -> dict[str, str]:
    """Every file one extraction job writes for a session.

    Per modality: ``<mod>_mask`` (native brain mask), ``<mod>_json`` (its sidecar);
    T1w also ``T1w_preproc`` (the bias-corrected scan); PET on the ``via_t1``
    route also ``pet_rigid`` (PET-to-T1w rigid).
    """
    out = {}
    pre = _prefix(sub, ses)
    for mod in modalities:
        d = _session_dir(results, "extraction", sub, ses, mod)
        out[f"{mod}_mask"] = d / f"{pre}_desc-brain_mask.nii.gz"
        out[f"{mod}_json"] = d / f"{pre}_desc-brain_mask.json"
        if mod == "T1w":
            out["T1w_preproc"] = d / f"{pre}_desc-preproc_T1w.nii.gz"
        if mod == "pet" and pet_route == "via_t1":
            out["pet_rigid"] = d / f"{pre}_from-pet_to-T1w_desc-rigid_mode-image_xfm.mat"
    return {k: str(v) for k, v in out.items()}


def registration(results, sub: str, ses: str, variant: str, modalities, pet_route: str) -> dict[str, str]:
    """Every file one registration job writes for a session.

    Keys: ``<mod>`` (image on the variant's grid), ``<mod>_json`` (sidecar with the
    chain), ``<mod>_mask`` (the native brain mask carried onto that grid), plus the
    transforms: ``<mod>_affine`` (linear; none: the identity to the scanner's
    world), ``<mod>_warp`` / ``<mod>_inverse_warp`` (syn). ``via_t1`` PET has no
    transform of its own in the aligned variants (it follows the T1w's).
    """
    out = {}
    pre = _prefix(sub, ses)
    space = "scanner" if variant == "none" else SPACE
    for mod in modalities:
        d = _session_dir(results, "registration", sub, ses, mod)
        out[mod] = d / f"{pre}_space-{space}_desc-{variant}_{mod}.nii.gz"
        out[f"{mod}_json"] = d / f"{pre}_space-{space}_desc-{variant}_{mod}.json"
        out[f"{mod}_mask"] = d / f"{pre}_space-{space}_desc-{variant}_label-brain_mask.nii.gz"
        own = not (mod == "pet" and pet_route == "via_t1")
        if variant == "none":
            out[f"{mod}_affine"] = d / f"{pre}_from-scanner_to-{mod}_desc-none_mode-image_xfm.mat"
        if own and variant == "linear":
            out[f"{mod}_affine"] = d / f"{pre}_from-{mod}_to-{SPACE}_desc-linear_mode-image_xfm.mat"
        if own and variant == "syn":
            out[f"{mod}_warp"] = d / f"{pre}_from-{mod}_to-{SPACE}_desc-syn_mode-image_xfm.nii.gz"
            out[f"{mod}_inverse_warp"] = d / f"{pre}_from-{SPACE}_to-{mod}_desc-syn_mode-image_xfm.nii.gz"
    return {k: str(v) for k, v in out.items()}


def skullstrip(results, sub: str, ses: str, variant: str, modalities) -> dict[str, str]:
    """Outputs of one skull-stripping job: ``<mod>_brain`` (the stripped image) and ``<mod>_qc`` (its QC
    figure, under ``qc/``) per modality, and ``qc`` (the session's QC rows)."""
    pre = _prefix(sub, ses)
    out = {}
    for mod in modalities:
        out[f"{mod}_brain"] = _session_dir(results, "skullstrip", sub, ses, mod) / f"{pre}_desc-{variant}_{mod}.nii.gz"
        out[f"{mod}_qc"] = _session_dir(results, "qc", sub, ses) / f"{pre}_desc-{variant}_{mod}_qc.png"
    out["qc"] = _session_dir(results, "skullstrip", sub, ses) / f"{pre}_desc-{variant}_qc.tsv"
    return {k: str(v) for k, v in out.items()}


def crop(results, sub: str, ses: str, variant: str, modalities) -> dict[str, str]:
    """Outputs of one crop job: ``<mod>`` (the cropped, normalised image) and ``<mod>_json`` (its
    sidecar) per modality."""
    pre = _prefix(sub, ses)
    out = {}
    for mod in modalities:
        d = _session_dir(results, "crop", sub, ses, mod)
        out[mod] = d / f"{pre}_desc-{variant}_{mod}.nii.gz"
        out[f"{mod}_json"] = d / f"{pre}_desc-{variant}_{mod}.json"
    return {k: str(v) for k, v in out.items()}


def qc_table(results, variant: str) -> str:
    """The QC table of every session of one variant (rule qc_table)."""
    return str(Path(results) / "qc" / f"desc-{variant}_qc.tsv")


def scans_qc(results) -> str:
    """The per-scan QC table across variants (rule qc_table)."""
    return str(Path(results) / "qc" / "scans_qc.tsv")


# ---- what the gathering stages write ------------------------------------------------------------------
def split(results, task: str, split_id: str) -> str:
    """One split of a task: the participants of training, validation and test (rule splits)."""
    return str(Path(results) / "splits" / f"task-{task}" / f"task-{task}_split-{split_id}_split.tsv")


def pack(results, variant: str, mod: str) -> dict[str, str]:
    """The cropped scans of one variant and modality packed into one array, with its index and sidecar
    (rule pack; an external dataset's under ``results/external/<name>``)."""
    pre = Path(results) / "pack" / f"desc-{variant}_{mod}"
    return {"volumes": f"{pre}_volumes.npy", "index": f"{pre}_index.tsv", "json": f"{pre}_volumes.json"}


def mosaics(results, variant: str, mod: str, layout: str) -> dict[str, str]:
    """The 2D mosaics of one variant and modality in one mosaic layout, with index and sidecar (rule mosaic)."""
    pre = Path(results) / "mosaic" / f"desc-{variant}_{mod}_layout-{layout}"
    return {"mosaics": f"{pre}_mosaics.npy", "index": f"{pre}_index.tsv", "json": f"{pre}_mosaics.json"}


def run_state_dir(model_path) -> str:
    """The checkpoint folder of a training run, beside its model (removed when the run completes)."""
    return f"{Path(model_path).with_suffix('')}_state"


def run_files(prefix) -> dict[str, str]:
    """The four files every training run writes (braindl.training.train_run), after its ``prefix``:
    ``model`` (.pt), ``history`` (per epoch), ``predictions`` (its test set) and ``summary`` (JSON)."""
    return {k: f"{prefix}_{k}.{e}" for k, e in
            (("model", "pt"), ("history", "tsv"), ("predictions", "tsv"), ("summary", "json"))}


def training_run(results, task: str, mod: str, variant: str, split_id: str, run: str) -> dict[str, str]:
    """One run of the variant comparison (rule train)."""
    d = Path(results) / "training" / f"task-{task}" / mod / f"desc-{variant}"
    return run_files(d / f"task-{task}_desc-{variant}_split-{split_id}_run-{run}")


def transfer_run(results, task: str, mod: str, variant: str, model: str, split_id: str, run: str) -> dict[str, str]:
    """One run of a model of the transfer experiment (rule train_model)."""
    d = Path(results) / "transfer" / f"task-{task}" / f"model-{model}"
    return run_files(d / f"task-{task}_{mod}_desc-{variant}_model-{model}_split-{split_id}_run-{run}")


def transfer_comparison(results, mod: str, variant: str) -> str:
    """The transfer experiment's table of every model and task (rule transfer_table)."""
    return str(Path(results) / "transfer" / f"{mod}_desc-{variant}_comparison.tsv")


def transfer_embedding(results, task: str, mod: str, variant: str, model: str) -> str:
    """The t-SNE/UMAP coordinates of one model's test features (rule transfer_embedding)."""
    d = Path(results) / "transfer" / f"task-{task}" / f"model-{model}"
    return str(d / f"task-{task}_{mod}_desc-{variant}_model-{model}_embedding.tsv")


def sweep_split(results, source_task: str, size: str, split_id: str) -> str:
    """The pre-training sweep's subset of a split's training participants (rule sweep_split)."""
    return str(Path(results) / "pretraining" / "splits" / f"task-{source_task}_size-{size}_split-{split_id}_split.tsv")


def sweep_run(results, stage: str, task: str, mod: str, variant: str, model: str, size_or_source: str,
              split_id: str, run: str) -> dict[str, str]:
    """One run of the pre-training sweep: ``stage`` ``pretrain`` (``size_or_source``: the training
    fraction's label) or ``finetune`` (the pre-training it starts from, or ``none``)."""
    entity = "size" if stage == "pretrain" else "from"
    d = Path(results) / "pretraining" / f"model-{model}" / stage
    return run_files(d / f"task-{task}_{mod}_desc-{variant}_model-{model}_{entity}-{size_or_source}"
                         f"_split-{split_id}_run-{run}")


def sweep_table(results, target_task: str, mod: str, variant: str, model: str) -> str:
    """The pre-training sweep's table of every fine-tuned run (rule sweep_table)."""
    return str(Path(results) / "pretraining" / f"task-{target_task}_{mod}_desc-{variant}_model-{model}_sweep.tsv")


def evaluation(results, task: str, mod: str) -> dict[str, str]:
    """The variant comparison's tables of one task and modality (rule evaluate)."""
    pre = Path(results) / "evaluation" / f"task-{task}" / f"task-{task}_{mod}"
    return {"metrics": f"{pre}_metrics.tsv", "summary": f"{pre}_summary.tsv", "comparison": f"{pre}_variants.tsv"}


# ---- heatmaps and their atlas aggregation -------------------------------------------------------------
def heatmap_unit(results, task: str, mod: str, variant: str, model: str) -> str:
    """The prefix of every file of one heatmap unit (a task, modality, variant and model of the workflow's
    own runs); :func:`heatmap_files` and the others below add the run, method and kind."""
    d = Path(results) / "heatmaps" / f"task-{task}" / mod / f"desc-{variant}" / f"model-{model}"
    return str(d / f"task-{task}_{mod}_desc-{variant}_model-{model}")


def heatmap_files(unit, split_id: str, run: str, method: str) -> dict[str, str]:
    """One run's heatmaps by one method (rule heatmap): ``heatmaps`` (4D NIfTI, a volume per test
    scan), ``index`` (its rows) and ``json`` (sidecar). ``unit``: :func:`heatmap_unit`, or the external
    validation's or the MS study's prefix."""
    pre = f"{unit}_split-{split_id}_run-{run}_method-{method}"
    return {"heatmaps": f"{pre}_heatmaps.nii.gz", "index": f"{pre}_heatmaps.tsv", "json": f"{pre}_heatmaps.json"}


def heatmap_groups(unit, method: str) -> dict[str, str]:
    """A unit's group maps by one method (rule heatmap_groups): per-group means (``groups``, with
    ``groups_tsv``), per-run disease maps (``runs``, ``runs_tsv``) and the mean brain (``meanbrain``)."""
    pre = f"{unit}_method-{method}"
    return {"groups": f"{pre}_groupmaps.nii.gz", "groups_tsv": f"{pre}_groupmaps.tsv",
            "runs": f"{pre}_runmaps.nii.gz", "runs_tsv": f"{pre}_runmaps.tsv", "meanbrain": f"{pre}_meanbrain.nii.gz"}


def heatmap_regions(unit, method: str, atlas: str) -> dict[str, str]:
    """A unit's relevance per atlas region by one method (rule heatmap_regions): ``regions`` (per run and
    scan) and ``summary`` (per group)."""
    pre = f"{unit}_method-{method}_atlas-{atlas}"
    return {"regions": f"{pre}_regions.tsv", "summary": f"{pre}_regionsummary.tsv"}


def heatmap_table(unit, atlas: str, kind: str) -> str:
    """A table over the methods of one unit: ``robustness``, ``robustnesssummary`` (rule
    heatmap_robustness) or ``groundtruth`` (rule heatmap_groundtruth)."""
    return f"{unit}_atlas-{atlas}_{kind}.tsv"


# ---- the dose branch ----------------------------------------------------------------------------------
def _dose_prefix(results, sub: str, ses: str) -> Path:
    return _session_dir(results, "dose", sub, ses, "pet") / _prefix(sub, ses)


def dose_counts(results, sub: str, ses: str) -> dict[str, str]:
    """The counts of every level of one PET scan and their sidecar (rule dose_reconstruct, first step)."""
    pre = _dose_prefix(results, sub, ses)
    return {"counts": f"{pre}_desc-counts_sinogram.npz", "json": f"{pre}_desc-counts_sinogram.json"}


def dose_reconstruction(results, sub: str, ses: str, level: str) -> dict[str, str]:
    """One count level's reconstruction of a scan and its sidecar (rule dose_reconstruct)."""
    pre = _dose_prefix(results, sub, ses)
    return {"pet": f"{pre}_desc-dose{level}_pet.nii.gz", "json": f"{pre}_desc-dose{level}_pet.json"}


def dose_patches(results, sub: str, ses: str, level: str) -> dict[str, str]:
    """The patches of one count level's reconstruction and their sidecar (rule dose_patches)."""
    pre = _dose_prefix(results, sub, ses)
    return {"patches": f"{pre}_desc-dose{level}_patches.npy", "json": f"{pre}_desc-dose{level}_patches.json"}


def dose_scores(results) -> str:
    """The quality score of every scored scan and level (rule dose_scores)."""
    return str(Path(results) / "dose" / "quality_scores.tsv")


def dose_run(results, model: str, freeze: str, n: str, fold: str, run: str) -> dict[str, str]:
    """One run of the dose regression (rule dose_train): ``predictions``, ``history``, ``summary``."""
    pre = Path(results) / "dose" / "models" / f"model-{model}_freeze-{freeze}_n-{n}_fold-{fold}_run-{run}"
    return {"predictions": f"{pre}_predictions.tsv", "history": f"{pre}_history.tsv", "summary": f"{pre}_summary.json"}


def dose_table(results) -> str:
    """The metrics of every dose regression run (rule dose_table)."""
    return str(Path(results) / "dose" / "quality_runs.tsv")


# ---- figures: every figure of a run in one folder --------------------------------------------------------
def figure(results, name: str, fmt: str) -> str:
    """A figure of the run, ``results/figures/<name>.<fmt>`` (``figures.format``): every figure is in one
    folder, its name saying what it shows (the QC figures, one per scan, are under ``qc/``)."""
    return str(Path(results) / "figures" / f"{name}.{fmt}")


def variant_figure(results, task: str, mod: str, kind: str, fmt: str) -> str:
    """A figure of the registration comparison (rules figure_variants, figure_roc, figure_splits)."""
    return figure(results, f"task-{task}_{mod}_{kind}", fmt)


def transfer_figure(results, task: str, mod: str, variant: str, kind: str, fmt: str, model: str | None = None) -> str:
    """A figure of the transfer experiment: per task (``metrics``, ``roc``) or per model (``embedding``)."""
    entity = "" if model is None else f"_model-{model}"
    return figure(results, f"transfer_task-{task}_{mod}_desc-{variant}{entity}_{kind}", fmt)


def sweep_figure(results, target_task: str, mod: str, variant: str, model: str, fmt: str) -> str:
    """The pre-training sweep's figure (rule sweep_figure)."""
    return figure(results, f"pretraining_task-{target_task}_{mod}_desc-{variant}_model-{model}_sweep", fmt)


def heatmap_figure(results, task: str, mod: str, variant: str, model: str, kind: str, fmt: str,
                   method: str | None = None) -> str:
    """A figure of a heatmap unit: per method (``display``, ``statmap``, ``regions``) or over its methods
    (``robustness``, ``localisation``)."""
    entity = "" if method is None else f"_method-{method}"
    return figure(results, f"heatmaps_task-{task}_{mod}_desc-{variant}_model-{model}{entity}_{kind}", fmt)


def dose_figure(results, kind: str, fmt: str) -> str:
    """A figure of the dose branch (``levels``, ``training_size``, ``freezing``)."""
    return figure(results, f"dose_{kind}", fmt)
