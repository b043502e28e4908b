"""The thesis' studies 5 (PIF) and 2 (AD to MS, lesion relevance) through the real Snakefile, on a tiny
T1w-only cohort with an MS group: its own run, so that the main tiny run keeps its cohort."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from braindl import pifstudy, synthetic
from snakemake_runs import dry_runs_changed, job_counts, smk

pytestmark = pytest.mark.slow

STUDIES = {
    # 5 controls: those the CN vs MS split holds out leave the pre-training's training set (msstudy.pretrain_split)
    "synthetic": {"groups": {"CN": 5, "MCI": 0, "AD": 4, "DLB": 0, "FTLD": 0, "MS": 4}, "sessions": [1, 1]},
    "dataset": {"modalities": ["T1w"]},
    # a coarse affine (no half-resolution level): the plumbing is tested here, accuracy in test_registration.py
    "registration": {"variants": ["linear"], "affine_iterations": [100, 50, 0, 0]},
    "splits": {"n_splits": 2, "test_fraction": 0.25, "validation_fraction": 0.34},
    "training": {"max_epochs": 2, "batch_size": 4},
    "evaluation": {"bootstrap": 50},
    # the other experiments off: this run is about the two studies
    # 000's 2D ResNet-18 on mosaics of the T1w crop (config.yaml's 3D arm removed with null), for the external
    # validation of a transfer run on the external dataset's mosaics
    "transfer": {"tasks": ["CN_vs_AD"], "modality": "T1w", "variant": "linear", "roc_task": None,
                 "embedding_task": None, "models": {"cnn3d": None, "resnet18": {
                     "layout": "t1small", "max_epochs": 2, "batch_size": 4}}},
    "mosaic": {"layouts": {"t1small": {"rows": 2, "columns": 4, "axis": 2, "slices": {"first": 32, "last": 63},
                                       "interleave": 4}}},
    "pretraining": {"model": None},
    "heatmaps": {"tasks": [], "variants": ["linear"], "transfer_models": ["resnet18"]},
    # no bias correction: N4 runs in the tiny run and the ADNI-layout run (accuracy in test_registration.py)
    "skullstrip": {"n4": {"enabled": False}},
    # study 5 on both tasks: 2 draws per split (one of each architecture), all and half the training set
    "pif_study": {"tasks": ["CN_vs_AD", "sex"], "samples": 2, "min_per_architecture": 1, "fractions": [1.0, 0.5],
                  "max_epochs": 2, "batch_sizes": [4], "patience": [2]},
    "ms_study": {"enabled": True, "max_epochs": 2},
    # external validation of the CN vs AD runs: a second cohort (another seed: other subjects and sites) with
    # an MCI participant (no class of the model), and an unlabelled one
    "external": {"datasets": {"site2": {"bids_dir": None, "synthetic": {
        "seed": 7, "groups": {"CN": 1, "MCI": 1, "AD": 1, "DLB": 0, "FTLD": 0, "MS": 0}}},
        "blind": {"bids_dir": None, "labelled": False, "synthetic": {
            "seed": 8, "groups": {"CN": 1, "MCI": 0, "AD": 0, "DLB": 0, "FTLD": 0, "MS": 0}}}},
        "tasks": ["CN_vs_AD"], "modalities": ["T1w"], "variants": ["linear"], "transfer_models": ["resnet18"],
        # LRP explains the 3D CNN; gradient x input both (LRP does not apply to the ResNet)
        "heatmap_methods": ["lrp_epsilon", "gradient_x_input"]},
}
# one search job per task, family and fraction (resources.training_job_runs: unit), each training both splits'
# searches of 2 samples
PIF_JOBS = {"pif_search": 2 * 2 * 2, "pif_table": 1, "pif_figure": 1}
PIF_RUNS = 2 * 2 * PIF_JOBS["pif_search"]
# per split: pre-training, fine-tuning, from scratch; one heatmap job for the fine-tuned runs
MS_RUNS = {"finetune": 2, "scratch": 2, "pretrain": 2}


@pytest.fixture(scope="module")
def studies_run(repo, tmp_path_factory):
    wd = tmp_path_factory.mktemp("studies")
    (wd / "studies.yaml").write_text(yaml.safe_dump(STUDIES))
    smk(repo, wd, "--cores", "2", "--configfile", "studies.yaml", "all")
    return wd


def _read(path, **kw):
    return pd.read_csv(path, sep="\t", dtype={"participant_id": str, "session_id": str, "split": str}, **kw)


def test_pif_study_tables(studies_run):
    res = studies_run / "results"
    runs = _read(res / "pifstudy/T1w_desc-linear_runs.tsv")
    summary = _read(res / "pifstudy/T1w_desc-linear_summary.tsv")
    assert len(runs) == PIF_RUNS
    assert set(runs.model) == {"vgg3d_a", "vgg3d_b", "pif3d_a", "pif3d_b"}
    # each split drew one sample of each architecture, shared by both families and fractions
    for (task, split), g in runs.groupby(["task", "split"]):
        assert set(g.architecture) == {"A", "B"}
        assert g.groupby("sample")[["architecture", "learning_rate"]].nunique().max().max() == 1
    assert (runs.epochs <= 2).all() and (runs.seconds > 0).all()
    # the search keeps, per task, split, family and fraction, the sample of the best validation AUC
    assert runs.selected.sum() == 2 * 2 * 2 * 2
    for _, g in runs.groupby(["task", "split", "family", "fraction"]):
        kept = g[g.selected]
        assert len(kept) == 1
        if g.validation_roc_auc.notna().any():
            assert kept.validation_roc_auc.iloc[0] == g.validation_roc_auc.max()
    assert len(summary) == 2 * 2 * 2
    for row in summary.itertuples():
        kept = runs[runs.selected & (runs.task == row.task) & (runs.family == row.family) & (runs.fraction == row.fraction)]
        assert row.roc_auc_mean == pytest.approx(kept.roc_auc.mean(), nan_ok=True)
        assert row.epochs_mean == pytest.approx(kept.epochs.mean())
    # the half-sized training sets: stratified halves of the split's training participants, the rest unchanged
    for task in ("CN_vs_AD", "sex"):
        full = _read(res / f"splits/task-{task}/task-{task}_split-01_split.tsv")
        half = _read(res / f"pifstudy/splits/task-{task}_size-050_split-01_split.tsv")
        n_full = full[full.set == "train"].participant_id.nunique()
        assert half[half.set == "train"].participant_id.nunique() in (n_full // 2, (n_full + 1) // 2, n_full // 2 + 1)
        assert half[half.set != "train"].reset_index(drop=True).equals(full[full.set != "train"].reset_index(drop=True))
        assert set(runs[(runs.task == task) & (runs.fraction == 0.5)].n_train) <= {
            len(half[half.set == "train"])}
    sex = _read(res / "splits/task-sex/task-sex_split-01_split.tsv")
    assert set(sex.diagnosis) == {"CN", "AD"}  # MS participants are not among sex's diagnoses
    summ = json.loads(next((res / "pifstudy/task-sex/family-pif").glob("*_summary.json")).read_text())
    assert summ["classes"] == ["F", "M"] and summ["model"] in ("pif3d_a", "pif3d_b")


def test_pif_figure_reads_the_summary(studies_run, tmp_path):
    res = studies_run / "results"
    assert (res / "figures/pifstudy_T1w_desc-linear.png").stat().st_size > 0
    shown = pifstudy.study_figure(res / "pifstudy/T1w_desc-linear_summary.tsv", tmp_path / "f.png", {"dpi": 40})
    summary = _read(res / "pifstudy/T1w_desc-linear_summary.tsv")
    m = shown[shown.measure == "epochs"].merge(summary, on=["task", "family", "fraction"])
    np.testing.assert_allclose(m["mean"], m["epochs_mean"])


def test_ms_transfer_runs_and_table(studies_run):
    res = studies_run / "results"
    table = _read(res / "msstudy/task-CN_vs_MS_T1w_desc-linear_model-cnn3d_ms_runs.tsv")
    assert table.arm.value_counts().to_dict() == MS_RUNS
    assert set(table[table.arm == "pretrain"].task) == {"CN_vs_AD"}
    assert set(table[table.arm != "pretrain"].task) == {"CN_vs_MS"}
    for split in ("01", "02"):
        pre = res / f"msstudy/arm-pretrain/T1w_desc-linear_model-cnn3d_ms_arm-pretrain_split-{split}_run-01_model.pt"
        fine = json.loads((res / f"msstudy/arm-finetune/T1w_desc-linear_model-cnn3d_ms_arm-finetune_split-{split}"
                                 "_run-01_summary.json").read_text())
        scratch = json.loads((res / f"msstudy/arm-scratch/T1w_desc-linear_model-cnn3d_ms_arm-scratch_split-{split}"
                                    "_run-01_summary.json").read_text())
        assert (studies_run / fine["pretrained"]).resolve() == pre.resolve() and scratch["pretrained"] is None
        # no participant the MS classifier is validated or tested on trained or selected the AD model
        target = _read(res / f"splits/task-CN_vs_MS/task-CN_vs_MS_split-{split}_split.tsv")
        source = _read(res / f"msstudy/splits/task-CN_vs_AD_split-{split}_split.tsv")
        held_out = set(target[target.set != "train"].participant_id)
        assert held_out and not held_out & set(source[source.set != "test"].participant_id)
        assert fine["classes"] == ["CN", "MS"] and fine["fresh_parameters"] == []  # the AD head fits MS vs CN
    summary = _read(res / "msstudy/task-CN_vs_MS_T1w_desc-linear_model-cnn3d_ms_summary.tsv").set_index("arm")
    diff = (table[table.arm == "finetune"].roc_auc.to_numpy() - table[table.arm == "scratch"].roc_auc.to_numpy())
    assert summary.loc["finetune-scratch", "roc_auc_mean"] == pytest.approx(np.nanmean(diff), nan_ok=True)


def test_lesion_relevance_against_the_ground_truth(studies_run):
    """The carried lesion masks against the generator's template-space truth, and equation (2) read back."""
    res = studies_run / "results"
    rel = _read(res / "msstudy/task-CN_vs_MS_T1w_desc-linear_model-cnn3d_ms_lesionrelevance.tsv")
    for split in ("01", "02"):
        index = _read(res / f"msstudy/heatmaps/task-CN_vs_MS_T1w_desc-linear_model-cnn3d_ms_arm-finetune_split-{split}"
                            "_run-01_method-lrpepsilon_heatmaps.tsv")
        assert len(rel[rel.split.astype(int) == int(split)]) == len(index)
    ms, cn = rel[rel.diagnosis == "MS"], rel[rel.diagnosis == "CN"]
    assert len(ms) >= 2 and len(cn) >= 2
    assert (ms.lesion_ml > 0).all() and (cn.lesion_ml == 0).all() and cn.lesion_relevance.isna().all()
    maps = {}
    truth = Path(res / "synthetic/groundtruth")
    for row in ms.itertuples():
        sub, ses = row.participant_id[4:], row.session_id
        pre = f"sub-{sub}_ses-{ses}_desc-linear_T1w"
        carried = nib.load(res / f"msstudy/lesions/sub-{sub}/ses-{ses}/{pre}_label-lesion_probseg.nii.gz")
        brain = np.asarray(nib.load(res / f"msstudy/lesions/sub-{sub}/ses-{ses}/{pre}_label-brain_mask.nii.gz").dataobj)
        share = np.asarray(carried.dataobj, dtype=np.float64)
        lm = share >= 0.5
        assert row.chance == pytest.approx(lm.sum() / brain.sum())
        # equation (2): the share of the scan's positive relevance inside its lesion mask, from its heatmap
        hm_pre = (f"msstudy/heatmaps/task-CN_vs_MS_T1w_desc-linear_model-cnn3d_ms_arm-finetune_split-{int(row.split):02d}"
                  f"_run-{int(row.run):02d}_method-lrpepsilon_heatmaps")
        if hm_pre not in maps:
            maps[hm_pre] = (np.asarray(nib.load(res / f"{hm_pre}.nii.gz").dataobj, dtype=np.float64),
                            _read(res / f"{hm_pre}.tsv"))
        data, index = maps[hm_pre]
        volume = index[(index.participant_id == row.participant_id) & (index.session_id == ses)].volume.iloc[0]
        pos = np.clip(data[..., int(volume)], 0, None)
        assert row.lesion_relevance == pytest.approx(pos[lm].sum() / pos.sum())
        assert row.lesion_ml == pytest.approx(np.clip(share, 0, 1).sum() * 0.008)  # partial voxels count
        # the truth in template space (where the generator put the lesions before warping the anatomy)
        tpl = nib.load(synthetic.truth_paths(truth, sub, ses)["tpl_lesions"])
        t = np.asarray(tpl.dataobj) > 0
        tpl_ml = t.sum() * abs(np.linalg.det(tpl.affine[:3, :3])) / 1000
        assert 0.5 < row.lesion_ml / tpl_ml < 2.0
        c_carried = carried.affine[:3, :3] @ np.argwhere(lm).mean(0) + carried.affine[:3, 3]
        c_truth = tpl.affine[:3, :3] @ np.argwhere(t).mean(0) + tpl.affine[:3, 3]
        assert np.linalg.norm(c_carried - c_truth) < 6.0  # mm: linear registration leaves the warp's residual


def test_study_settings_rerun_only_their_own_jobs(repo, studies_run):
    got = dry_runs_changed(repo, studies_run, "studies.yaml", {
        "same": {},
        # both studies off: nothing else changes (their params reach only their own rules)
        "off": {"pif_study": {"tasks": []}, "ms_study": {"enabled": False}, "external": {"tasks": []}},
        "pif_epochs": {"pif_study": {"max_epochs": 3}},
        # the PIF layer's grid: only the PIF family's runs
        "grid": {"training": {"pif_grid": [2, 2, 2]}},
        "eps": {"ms_study": {"lrp_epsilon": 0.01}},
        "fine": {"ms_study": {"finetune": {**STUDIES_FINETUNE, "learning_rate": 1e-3}}}})
    assert got["same"] == {} and got["off"] == {}
    assert got["pif_epochs"] == {**PIF_JOBS, "all": 1}
    assert got["grid"] == {"pif_search": PIF_JOBS["pif_search"] // 2, "pif_table": 1, "pif_figure": 1, "all": 1}
    assert got["eps"] == {"ms_heatmap": 1, "ms_relevance": 1, "ms_figure": 1, "all": 1}
    assert got["fine"] == {"ms_train": 2, "ms_table": 1, "ms_heatmap": 1, "ms_relevance": 1, "ms_figure": 1,
                           "all": 1}


STUDIES_FINETUNE = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())["ms_study"]["finetune"]


EXT_RUNS = 2  # 2 splits x 1 run, one variant
EXT_MODELS = ("cnn3d_thesis", "resnet18")  # the variant comparison's 3D CNN and the transfer experiment's 2D model


def test_external_predictions_and_metrics(studies_run):
    res = studies_run / "results"
    preds = _read(res / "external/site2/task-CN_vs_AD_T1w_predictions.tsv")
    manifest = _read(res / "external/site2/inputs/manifest.tsv")
    assert len(preds) == len(manifest) * EXT_RUNS * len(EXT_MODELS)  # one row per external scan, model and run
    assert set(preds.participant_id) == set(manifest.participant_id) and set(preds.model) == set(EXT_MODELS)
    mci = preds.diagnosis == "MCI"
    assert mci.any() and not preds.loc[mci, "scored"].any() and preds.loc[mci, "truth"].isna().all()  # n/a
    assert preds.loc[~mci, "scored"].all()  # every CN and AD scan passed QC here
    metrics = _read(res / "external/site2/task-CN_vs_AD_T1w_metrics.tsv")
    assert len(metrics) == EXT_RUNS * len(EXT_MODELS)
    assert (metrics.n_scored == (~mci).sum() // (EXT_RUNS * len(EXT_MODELS))).all()
    from sklearn.metrics import roc_auc_score
    for row in metrics.itertuples():
        p = preds[(preds.split.astype(int) == int(row.split)) & preds.scored & (preds.model == row.model)]
        assert row.roc_auc == pytest.approx(roc_auc_score(p.truth == "AD", p.prob_AD), nan_ok=True)
    summary = _read(res / "external/site2/task-CN_vs_AD_T1w_summary.tsv")
    internal = _read(res / "evaluation/task-CN_vs_AD/task-CN_vs_AD_T1w_metrics.tsv")
    inner = summary[(summary.source == "internal") & (summary.metric == "balanced_accuracy")].set_index("model")
    assert inner.loc["cnn3d_thesis", "mean"] == pytest.approx(internal.balanced_accuracy.mean())
    # the 2D model's internal side: its own test predictions, the mean over runs
    from sklearn.metrics import balanced_accuracy_score
    own = [_read(p) for p in sorted((res / "transfer/task-CN_vs_AD/model-resnet18").glob("*_predictions.tsv"))]
    assert len(own) == EXT_RUNS
    assert inner.loc["resnet18", "mean"] == pytest.approx(np.mean(
        [balanced_accuracy_score(t[t.set == "test"].truth, t[t.set == "test"].predicted) for t in own]))
    # the 2D model read the external dataset's mosaics, made as the main dataset's
    main_m = json.loads((res / "mosaic/desc-linear_T1w_layout-t1small_mosaics.json").read_text())
    ext_m = json.loads((res / "external/site2/mosaic/desc-linear_T1w_layout-t1small_mosaics.json").read_text())
    assert ext_m["Shape"][1:] == main_m["Shape"][1:] == [4, 114, 192] and ext_m["Layout"] == main_m["Layout"]
    assert (res / "figures/external-site2_task-CN_vs_AD_T1w.png").stat().st_size > 0
    # the external scans were preprocessed as the main ones: the same crop grid and per-scan normalisation
    main_pack = json.loads((res / "pack/desc-linear_T1w_volumes.json").read_text())
    ext_pack = json.loads((res / "external/site2/pack/desc-linear_T1w_volumes.json").read_text())
    assert ext_pack["Shape"][1:] == main_pack["Shape"][1:] and ext_pack["Affine"] == main_pack["Affine"]
    # heatmaps of the external scans and their atlas tables: the 3D CNN with both methods, the ResNet with
    # gradient x input (mapped back from its mosaics to the volume)
    regions = sorted(p.name for p in (res / "external/site2/heatmaps").glob("*_regionsummary.tsv"))
    assert len(regions) == 3 and sum("model-resnet18_method-gradientxinput" in r for r in regions) == 1
    for r in regions:
        assert len(_read(res / "external/site2/heatmaps" / r)) > 0
    # the unlabelled dataset: predictions only
    blind = _read(res / "external/blind/task-CN_vs_AD_T1w_predictions.tsv")
    assert len(blind) == EXT_RUNS * len(EXT_MODELS) and not blind.scored.any() and blind.truth.isna().all()
    assert not (res / "external/blind/task-CN_vs_AD_T1w_metrics.tsv").exists()
    maps = sorted((res / "external/blind/heatmaps").glob("*_heatmaps.nii.gz"))  # each scan's map, no group maps
    assert len(maps) == EXT_RUNS * 3 and nib.load(maps[0]).shape[-1] == 1
    assert np.isfinite(np.asarray(nib.load(maps[0]).dataobj)).all()


def test_external_datasets_rerun_only_their_own_jobs(repo, studies_run):
    """Adding an external dataset reruns no job of the main one; changing one reruns only its own jobs."""
    ext = STUDIES["external"]
    got = dry_runs_changed(repo, studies_run, "studies.yaml", {
        "added": {"external": {**ext, "datasets": {**ext["datasets"], "site3": {"bids_dir": None, "synthetic": {
            "seed": 9, "groups": {"CN": 1, "MCI": 0, "AD": 1, "DLB": 0, "FTLD": 0, "MS": 0}}}}}},
        "changed": {"external": {**ext, "datasets": {**ext["datasets"], "site2": {
            **ext["datasets"]["site2"], "synthetic": {**ext["datasets"]["site2"]["synthetic"], "seed": 11}}}}},
        # a transfer model selected or left out: only the external jobs that read it
        "only3d": {"external": {**ext, "transfer_models": []}}})
    added, changed, only_3d = got["added"], got["changed"], got["only3d"]
    assert added and all(r.startswith("external") or r == "all" for r in added)
    assert added["external_site3_extract"] == 2 and not any("site2" in r or "blind" in r for r in added)
    assert added["external_predict"] == added["external_predict_model"] == EXT_RUNS
    assert added["external_site3_mosaic"] == 1
    assert changed and all(r.startswith("external") or r == "all" for r in changed)
    assert not any("blind" in r for r in changed)
    assert changed["external_predict"] == EXT_RUNS and changed["external_site2_synthetic_cohort"] == 1
    assert only_3d and all(r.startswith("external") or r == "all" for r in only_3d)
    assert "external_predict" not in only_3d and "external_predict_model" not in only_3d


def test_report_holds_the_studies_and_external_validation(repo, studies_run):
    import re

    smk(repo, studies_run, "--configfile", "studies.yaml", "--report", "report.html")
    html = (studies_run / "report.html").read_text()
    for name in ("pifstudy_T1w_desc-linear.png", "msstudy_T1w_desc-linear_model-cnn3d_ms.png",
                 "external-site2_task-CN_vs_AD_T1w.png", "T1w_desc-linear_summary.tsv",
                 "task-CN_vs_MS_T1w_desc-linear_model-cnn3d_ms_lesionrelevance.tsv"):
        assert name in html, name
    for caption in ("pifstudy.rst", "msstudy.rst", "external.rst"):
        opening = re.split(r"``|{{|{%", (repo / "rules/captions" / caption).read_text())[0].strip()[:40]
        assert opening in html, caption
