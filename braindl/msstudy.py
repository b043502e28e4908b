"""004 study 2: transfer from Alzheimer's disease to multiple sclerosis, and the relevance of lesions.

"We pre-trained our CNN model on ADNI MRI data to separate AD patients and healthy
controls, and fine-tuned it on the MS data set to separate MS patients and healthy
controls. ... Fine-tuning on the MS data set uses the same model architecture, which
is initialized with the weights and biases of the selected pre-trained model instead
of randomly distributed values. We allow all layers to re-learn ... the data was
augmented during fine-tuning, such that during the creation of each mini-batch each
image was flipped along the sagittal axis with a probability of 50% and randomly
translated between -2 and 2 pixels within the axial plane. We found optimal initial
learning rates to be 0.001 in the pre-training and 0.0005 with a 0.002 decay in the
fine-tuning phase." Early stopping: "after the validation loss has not improved for
10/15 epochs during pre-training/fine-tuning". The reference is "the CNN model solely
trained on the MS data set".

Lesion relevance, its equation (2): "To assess the amount of relevance attributed to
the lesions in the original MRI data set, we computed

    lesion relevance = sum(lm * hm+) / sum(hm+)

where lm is the individual lesion mask and hm+ the individual positive relevance."
It is compared with "a lesion coverage of only 0.41%" (the lesions' share of the
brain: the chance share), and "the sum of voxels containing lesions (referred to as
lesion sum) and LRP relevance sum are significantly correlated" (Pearson, permutation
test), the relevance sum taken "over all voxels".

This module plans the three arms' settings, carries a native lesion mask into a
scan's cropped grid, and makes the tables and figures; the runs are
:func:`braindl.training.train_run`, the heatmaps :func:`braindl.heatmaps.run_heatmaps`.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from braindl import derivatives
from braindl.io import write_nifti, write_tsv

#: the three arms: pre-training on the source task, fine-tuning from it, training from scratch
ARMS = ("pretrain", "finetune", "scratch")
TARGET_TASK = "CN_vs_MS"
TARGET_CLASS = "MS"
MEASURES = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity")


def arm_settings(training: dict, study: dict, arm: str) -> dict:
    """Training settings of one arm: config ``training`` (without its task and transfer keys), the
    study's network, dropout and epochs, then the arm's own section (``pretrain`` or ``finetune``;
    ``scratch`` trains with the fine-tuning settings from random weights, so that only the start differs)."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; use one of {ARMS}")
    skip = {"tasks", "modalities", "finetune_from", "pretrained", "freeze", "pif_grid", "pif_filters"}
    out = {k: v for k, v in training.items() if k not in skip}
    out.update(model=study["model"], dropout=float(study["dropout"]), max_epochs=int(study["max_epochs"]),
               monitor="val_loss", pretrained=None, freeze="none")
    out.update(study["pretrain" if arm == "pretrain" else "finetune"])
    return out


# ---- the pre-training split ----------------------------------------------------------------------------
def pretrain_split(source_tsv, target_tsv, out_tsv) -> pd.DataFrame:
    """The source task's split for pre-training, with every participant that the target task's split
    of the same number holds out (validation or test) moved to the test set: the controls of both
    tasks are one group of people, and a control the MS classifier is tested on must not have trained
    (or selected) the model it starts from. The thesis' AD and MS data were different cohorts."""
    from braindl import splits

    source, target = splits.read_split(source_tsv), splits.read_split(target_tsv)
    held_out = set(target.loc[target["set"].isin(["validation", "test"]), "participant_id"])
    out = source.copy()
    moved = out["participant_id"].isin(held_out) & (out["set"] != "test")
    if moved.any():  # a test set holds each participant's baseline only
        first = out[moved].sort_values("session_id").drop_duplicates("participant_id")
        out = pd.concat([out[~moved], first.assign(set="test")]).sort_values(["participant_id", "session_id"])
    out = out.reset_index(drop=True)
    splits.check_disjoint(out, source=f"{source_tsv} without the held-out participants of {target_tsv}")
    write_tsv(out_tsv, out)
    return out


# ---- lesion masks on the scans' cropped grids ------------------------------------------------------
def carry_lesion_mask(native_mask, registered_image, registered_mask, sidecar, box: dict, aligned: bool,
                      out_lesion, out_brain) -> dict:
    """A native lesion mask carried through the scan's registration chain (the one its image took,
    from ``sidecar``) onto the registered grid and cropped to ``box`` as the scan was: the share of each
    voxel that is lesion (``out_lesion``, linear interpolation of the binary mask) and the scan's brain
    mask on the same grid (``out_brain``). Returns voxel counts and volumes."""
    from braindl.crop import resample_to_box, scan_box_affine
    from braindl.registration import apply_chain, load_scan, read_chain, to_native_list

    chain, base = read_chain(sidecar)
    files, invert = to_native_list(chain, base)
    lesion = load_scan(native_mask)
    if not np.asarray(lesion.numpy()).any():
        raise ValueError(f"{native_mask}: the lesion mask is empty")
    ref = load_scan(registered_image)
    on_grid = apply_chain(ref, lesion, files, invert, "linear").numpy().astype(np.float32)
    img = nib.load(str(registered_image))
    aff = scan_box_affine(img.affine, box, aligned)
    share = np.clip(resample_to_box(on_grid, img.affine, aff, box["shape"], order=1), 0, 1).astype(np.float32)
    reg_mask = np.asarray(nib.load(str(registered_mask)).dataobj)
    brain = resample_to_box(reg_mask, img.affine, aff, box["shape"], order=0) > 0.5
    write_nifti(out_lesion, share, aff, np.float32)
    write_nifti(out_brain, brain.astype(np.uint8), aff, np.uint8)
    native = nib.load(str(native_mask))
    native_ml = float(np.asarray(native.dataobj).astype(bool).sum() * abs(np.linalg.det(native.affine[:3, :3]))) / 1000
    voxel_ml = float(abs(np.linalg.det(aff[:3, :3]))) / 1000
    return {"native_lesion_ml": native_ml, "carried_lesion_ml": float(share.sum()) * voxel_ml,
            "brain_ml": float(brain.sum()) * voxel_ml}


# ---- lesion relevance ---------------------------------------------------------------------------------
def lesion_relevance(heatmap: np.ndarray, lesion: np.ndarray, brain: np.ndarray, voxel_ml: float) -> dict:
    """Equation (2) of 004 study 2 for one scan: the share of its positive relevance inside the lesion
    mask (``lesion`` >= 0.5), the chance share (lesion voxels over brain voxels), the lesion sum (mL, from
    the share of each voxel that is lesion: a small lesion on a coarse grid may have no voxel that is half
    lesion, and still counts) and the relevance sum over all voxels (signed)."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    lm = np.asarray(lesion) >= 0.5
    pos = np.clip(heatmap, 0, None)
    total_pos = float(pos.sum())
    n_brain = int(np.asarray(brain, bool).sum())
    return {"lesion_ml": float(np.clip(np.asarray(lesion, dtype=np.float64), 0, 1).sum()) * voxel_ml,
            "lesion_relevance": float(pos[lm].sum()) / total_pos if total_pos > 0 else np.nan,
            "chance": float(lm.sum()) / n_brain if n_brain else np.nan,
            "relevance_sum": float(heatmap.sum()), "positive_relevance": total_pos}


def relevance_table(runs: list[dict], masks: dict, lesion_groups=()) -> pd.DataFrame:
    """One row per test scan of every run: ``runs`` are dicts with split, run, heatmaps (4D NIfTI of
    :func:`~braindl.heatmaps.run_heatmaps`) and index; ``masks`` maps ``(participant_id, session_id)``
    to its ``(lesion, brain)`` files. A scan without a lesion mask (a control) has lesion sum 0 and no
    lesion relevance; a scan of a ``lesion_groups`` diagnosis without one is refused (its lesions would
    count as none)."""
    rows = []
    for r in runs:
        img = nib.load(str(r["heatmaps"]))
        maps = np.asarray(img.dataobj, dtype=np.float32)
        voxel_ml = float(abs(np.linalg.det(img.affine[:3, :3]))) / 1000
        index = pd.read_csv(r["index"], sep="\t", dtype={"participant_id": str, "session_id": str})
        for row in index.itertuples(index=False):
            key = (row.participant_id, row.session_id)
            hm = maps[..., int(row.volume)]
            if key not in masks and row.diagnosis in set(lesion_groups):
                raise ValueError(f"{r['index']}: {key[0]} ses-{key[1]} ({row.diagnosis}) has no lesion mask")
            if key in masks:
                lesion = np.asarray(nib.load(str(masks[key][0])).dataobj)
                brain = np.asarray(nib.load(str(masks[key][1])).dataobj)
                if lesion.shape != hm.shape:
                    raise ValueError(f"{masks[key][0]}: grid {lesion.shape} is not the heatmaps' {hm.shape}")
                values = lesion_relevance(hm, lesion, brain, voxel_ml)
            else:
                values = {"lesion_ml": 0.0, "lesion_relevance": np.nan, "chance": np.nan,
                          "relevance_sum": float(hm.astype(np.float64).sum()),
                          "positive_relevance": float(np.clip(hm, 0, None).sum())}
            rows.append({"split": int(r["split"]), "run": int(r["run"]), "participant_id": row.participant_id,
                         "session_id": row.session_id, "diagnosis": row.diagnosis, "truth": row.truth,
                         "predicted": row.predicted, **values})
    return pd.DataFrame(rows)


def relevance_summary(table: pd.DataFrame, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Per split and run, and over all scans (split = run = ``all``, each scan once): the mean lesion relevance and chance
    share of the scans with lesions, a one-sided Wilcoxon signed-rank test of lesion relevance above
    chance, and the Pearson correlation of lesion sum and relevance sum over all test scans with its
    permutation p value (as study 2's Figure 4)."""
    from scipy import stats

    def one(g, split, run):
        les = g[g["lesion_ml"] > 0].dropna(subset=["lesion_relevance"])
        diff = (les["lesion_relevance"] - les["chance"]).to_numpy()
        w_p = float(stats.wilcoxon(diff, alternative="greater").pvalue) if len(diff) >= 2 and np.any(diff) else np.nan
        r, p = np.nan, np.nan
        if len(g) >= 3 and g["lesion_ml"].nunique() > 1 and g["relevance_sum"].nunique() > 1:
            res = stats.pearsonr(g["lesion_ml"], g["relevance_sum"],
                                 method=stats.PermutationMethod(n_resamples=n_resamples, random_state=seed))
            r, p = float(res.statistic), float(res.pvalue)
        return {"split": split, "run": run, "n_scans": len(g), "n_with_lesions": len(les),
                "lesion_relevance_mean": float(les["lesion_relevance"].mean()) if len(les) else np.nan,
                "chance_mean": float(les["chance"].mean()) if len(les) else np.nan,
                "ratio_to_chance": float(les["lesion_relevance"].mean() / les["chance"].mean()) if len(les) else np.nan,
                "wilcoxon_p": w_p, "pearson_r": r, "pearson_p": p}

    rows = [one(g, str(s), str(r)) for (s, r), g in table.groupby(["split", "run"], sort=True)]
    # pooled: a scan tested in several splits or runs counts once (its values averaged over them), so that
    # the tests do not take repeats for independent scans
    per_scan = table.groupby(["participant_id", "session_id"], sort=True).agg(
        {"lesion_ml": "mean", "relevance_sum": "mean", "lesion_relevance": "mean", "chance": "mean"}).reset_index()
    rows.append(one(per_scan, "all", "all"))
    return pd.DataFrame(rows)


def run_relevance(runs: list[dict], masks: dict, out_table, out_summary, lesion_groups=()) -> None:
    table = relevance_table(runs, masks, lesion_groups)
    write_tsv(out_table, table)
    write_tsv(out_summary, relevance_summary(table))


# ---- the transfer comparison --------------------------------------------------------------------------
def comparison_table(runs: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test measures per arm, split and run; per arm their mean and SD, with the paired difference
    finetune - scratch). ``runs``: dicts with arm, split, run, predictions and summary."""
    from braindl.evaluation import classification_metrics, prediction_arrays

    rows = []
    for r in runs:
        summary = json.loads(Path(r["summary"]).read_text())
        pred = pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
        m = classification_metrics(*prediction_arrays(pred[pred["set"] == "test"], summary["classes"]))
        rows.append({"arm": r["arm"], "task": summary["task"], "split": int(r["split"]), "run": int(r["run"]),
                     **{k: m[k] for k in MEASURES}, "epochs": int(summary["epochs"]),
                     "best_epoch": int(summary["best_epoch"]), "seconds": float(summary["seconds"]),
                     "n_train": int(summary["n_train"]), "n_test": int(summary["n_test"])})
    table = pd.DataFrame(rows)
    out = []
    for arm, g in table.groupby("arm", sort=False):
        out.append({"arm": arm, "task": g["task"].iloc[0], "n_runs": len(g),
                    **{f"{k}_{s}": getattr(g[k], s)() for k in (*MEASURES, "epochs") for s in ("mean", "std")}})
    summary = pd.DataFrame(out)
    pairs = table[table["arm"].isin(["finetune", "scratch"])].pivot_table(index=["split", "run"], columns="arm",
                                                                           values=list(MEASURES))
    if {"finetune", "scratch"} <= set(table["arm"]):
        diff = {k: pairs[(k, "finetune")] - pairs[(k, "scratch")] for k in MEASURES}
        summary = pd.concat([summary, pd.DataFrame([{"arm": "finetune-scratch", "task": TARGET_TASK,
                                                     "n_runs": len(pairs),
                                                     **{f"{k}_{s}": getattr(diff[k], s)() for k in MEASURES
                                                        for s in ("mean", "std")}}])], ignore_index=True)
    return table, summary


def run_comparison(runs: list[dict], out_runs, out_summary) -> None:
    table, summary = comparison_table(runs)
    write_tsv(out_runs, table)
    write_tsv(out_summary, summary)


# ---- figures ------------------------------------------------------------------------------------------
def study_figure(runs_tsv, relevance_tsv, summary_tsv, out, style: dict) -> dict:
    """Left: test ROC AUC and balanced accuracy of the MS classifier fine-tuned from the AD model and
    trained from scratch (mean +- SD over splits and runs). Right: lesion sum against relevance sum of
    every test scan, point size the lesion relevance (study 2's Figure 4), with the Pearson r of all
    scans. Returns the plotted values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from braindl.figures import save_figure

    runs = pd.read_csv(runs_tsv, sep="\t")
    rel = pd.read_csv(relevance_tsv, sep="\t", dtype={"participant_id": str, "session_id": str})
    summ = pd.read_csv(summary_tsv, sep="\t", dtype={"split": str, "run": str})
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.0, 3.8))
    arms = [a for a in ("finetune", "scratch") if a in set(runs["arm"])]
    bars = {}
    for k, measure in enumerate(("roc_auc", "balanced_accuracy")):
        for j, arm in enumerate(arms):
            v = runs.loc[runs["arm"] == arm, measure].astype(float)
            bars[(arm, measure)] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
            ax.bar(k + (j - 0.5) * 0.38, bars[(arm, measure)][0], 0.36, yerr=bars[(arm, measure)][1], capsize=3,
                   color=f"C{j}", label=arm if k == 0 else None)
    ax.set_xticks([0, 1], ["ROC AUC", "balanced accuracy"])
    ax.axhline(0.5, color="0.5", ls=":", lw=1)
    ax.set_ylim(0, 1)
    ax.set_title(f"{TARGET_TASK} test")
    ax.legend(fontsize=8, title="MS network")
    share = rel["lesion_relevance"].fillna(0).to_numpy(float)
    bx.scatter(rel["lesion_ml"], rel["relevance_sum"], s=15 + 300 * share,
               c=["C3" if d == TARGET_CLASS else "C0" for d in rel["diagnosis"]], alpha=0.7)
    pooled = summ[summ["split"] == "all"].iloc[0]
    bx.set_xlabel("lesion sum (mL)")
    bx.set_ylabel("LRP relevance sum")
    bx.set_title(f"r = {pooled['pearson_r']:.2f} (permutation p = {pooled['pearson_p']:.3g}); "
                 f"lesions: {pooled['lesion_relevance_mean']:.1%} of relevance, {pooled['chance_mean']:.2%} of brain",
                 fontsize=8)
    save_figure(fig, out, int(style.get("dpi", 150)))
    return {"bars": bars, "points": rel[["lesion_ml", "relevance_sum"]].to_numpy(float),
            "pearson_r": float(pooled["pearson_r"])}


# ---- planning and paths (cheap: the Snakefile calls them at parse time) --------------------------------
def arm_task(study: dict, arm: str) -> str:
    return study["source_task"] if arm == "pretrain" else TARGET_TASK


def pretrain_split_path(results, study: dict, split) -> str:
    return f"{results}/msstudy/splits/task-{study['source_task']}_split-{split}_split.tsv"


def run_paths(results, study: dict, arm, split, run) -> dict[str, str]:
    mod, reg, model = study["modality"], study["variant"], study["model"]
    pre = f"{results}/msstudy/arm-{arm}/{mod}_desc-{reg}_model-{model}_arm-{arm}_split-{split}_run-{run}"
    return derivatives.run_files(pre)


def heatmap_paths(results, study: dict, split, run) -> dict[str, str]:
    unit = (f"{results}/msstudy/heatmaps/task-{TARGET_TASK}_{study['modality']}_desc-{study['variant']}"
            f"_model-{study['model']}_arm-finetune")
    return derivatives.heatmap_files(unit, split, run, "lrpepsilon")


def lesion_paths(results, study: dict, subject, session) -> dict[str, str]:
    pre = (f"{results}/msstudy/lesions/sub-{subject}/ses-{session}/sub-{subject}_ses-{session}"
           f"_desc-{study['variant']}_{study['modality']}")
    return {"lesion": f"{pre}_label-lesion_probseg.nii.gz", "brain": f"{pre}_label-brain_mask.nii.gz"}


def table_paths(results, study: dict) -> dict[str, str]:
    pre = f"{results}/msstudy/task-{TARGET_TASK}_{study['modality']}_desc-{study['variant']}_model-{study['model']}"
    return {"runs": f"{pre}_runs.tsv", "summary": f"{pre}_summary.tsv", "relevance": f"{pre}_lesionrelevance.tsv",
            "relevance_summary": f"{pre}_lesionrelevancesummary.tsv"}


def figure_path(results, study: dict, fmt: str) -> str:
    return derivatives.figure(results, f"msstudy_{study['modality']}_desc-{study['variant']}_model-{study['model']}", fmt)


def planned_runs(results, study: dict, arms, split_ids, run_ids) -> list[dict]:
    return [dict(arm=a, split=s, run=r, **run_paths(results, study, a, s, r))
            for a in arms for s in split_ids for r in run_ids]


def lesion_sessions(cohort: pd.DataFrame, lesion_groups, sessions) -> list[tuple[str, str]]:
    """The (subject, session) labels of the baseline session (the only one a test set holds) of each
    participant among ``sessions`` who is in a lesion group (``cohort``: participant_id and diagnosis, as
    :func:`braindl.synthetic.cohort_table`)."""
    diagnosis = dict(zip(cohort["participant_id"], cohort["diagnosis"]))
    first = {}
    for sub, ses in sorted(sessions):
        if diagnosis.get(f"sub-{sub}") in set(lesion_groups):
            first.setdefault(sub, ses)
    return sorted(first.items())


def targets(results, study: dict, fmt: str, with_lesions: bool) -> list[str]:
    """The study's tables and figure; without lesion masks only the comparison of the arms."""
    tables = table_paths(results, study)
    if not with_lesions:
        return [tables["runs"], tables["summary"]]
    return [*tables.values(), figure_path(results, study, fmt)]
