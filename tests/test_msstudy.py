"""braindl.msstudy: 004 study 2's arms, lesion masks on the cropped grid, lesion relevance and tables."""

import json

import ants
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from braindl import msstudy
from braindl.crop import box_affine
from braindl.io import write_json, write_nifti, write_tsv


def test_arms_follow_study_2(default_config):
    study = {**default_config["ms_study"]}
    pre, fine, scratch = (msstudy.arm_settings(default_config["training"], study, a) for a in msstudy.ARMS)
    assert (pre["learning_rate"], pre["early_stopping_patience"], pre["augment_flip"]) == (1e-3, 10, 0.0)
    assert (fine["learning_rate"], fine["learning_rate_decay"], fine["early_stopping_patience"]) == (5e-4, 0.002, 15)
    assert (fine["augment_flip"], fine["augment_shift_voxels"], fine["augment_shift_axis"]) == (0.5, 2, "axial")
    assert fine == scratch  # only the starting weights differ
    assert {pre["model"], pre["dropout"], pre["monitor"]} == {"cnn3d_ms", 0.3, "val_loss"}
    with pytest.raises(ValueError, match="unknown arm"):
        msstudy.arm_settings(default_config["training"], study, "other")


def test_lesion_relevance_is_equation_2():
    """"lesion relevance = sum(lm * hm+) / sum(hm+)", against the lesions' share of the brain."""
    hm = np.zeros((4, 4, 4))
    hm[0, 0, 0], hm[1, 1, 1], hm[2, 2, 2], hm[3, 3, 3] = 3.0, 1.0, -5.0, 4.0
    lesion = np.zeros((4, 4, 4))
    lesion[0, 0, 0], lesion[2, 2, 2], lesion[1, 1, 1] = 1.0, 1.0, 0.4  # 0.4 of a voxel is not lesion
    brain = np.zeros((4, 4, 4), bool)
    brain[:2] = True  # 32 voxels
    out = msstudy.lesion_relevance(hm, lesion, brain, voxel_ml=0.008)
    assert out["lesion_relevance"] == pytest.approx(3.0 / 8.0)  # negative relevance counts in neither sum
    assert out["chance"] == pytest.approx(2 / 32)
    assert out["lesion_ml"] == pytest.approx(2.4 * 0.008)  # the lesion sum counts the partial voxel
    assert out["relevance_sum"] == pytest.approx(3.0)


def _sphere(shape, affine, center_mm, radius_mm):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    return (np.linalg.norm(xyz - np.asarray(center_mm), axis=-1) <= radius_mm).astype(np.uint8)


def _centroid(mask, affine):
    ijk = np.argwhere(mask > 0.5) if mask.dtype == bool else None
    w = mask.astype(float)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in mask.shape], indexing="ij"), -1).reshape(-1, 3)
    c = (idx * w.reshape(-1, 1)).sum(0) / w.sum()
    return affine[:3, :3] @ c + affine[:3, 3]


def test_a_native_lesion_mask_reaches_the_crop_grid_through_the_scans_transform(tmp_path):
    """Not the generator's data: a sphere in an oblique, anisotropic native grid and an ANTs transform written
    here (template point -> native point + 12 mm superior). The carried mask sits 12 mm lower, keeps its
    volume, and the brain mask is the registered mask cropped."""
    rot = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    native_aff = np.eye(4)
    native_aff[:3, :3] = rot @ np.diag([1.0, 1.2, 1.5])
    native_aff[:3, 3] = [-80, -100, -70]
    center = np.array([20.0, -10.0, 15.0])
    lesion = _sphere((150, 170, 110), native_aff, center, 6.0)
    write_nifti(tmp_path / "lesion.nii.gz", lesion, native_aff, np.uint8)
    grid_aff = np.diag([2.0, 2.0, 2.0, 1.0])
    grid_aff[:3, 3] = [-90, -126, -72]
    write_nifti(tmp_path / "registered.nii.gz", np.zeros((91, 109, 91), np.float32), grid_aff)
    reg_mask = np.zeros((91, 109, 91), np.uint8)
    reg_mask[20:70, 20:90, 20:70] = 1
    write_nifti(tmp_path / "registered_mask.nii.gz", reg_mask, grid_aff, np.uint8)
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3, translation=(0, 0, 12.0))
    ants.write_transform(tx, str(tmp_path / "xfm.mat"))
    write_json(tmp_path / "registered.json", {"TemplateToNative": [{"affine": "xfm.mat"}]})
    box = {"shape": [48, 57, 48], "resolution_mm": 2.0, "center_mm": [0.0, -18.0, 8.0]}
    info = msstudy.carry_lesion_mask(tmp_path / "lesion.nii.gz", tmp_path / "registered.nii.gz",
                                     tmp_path / "registered_mask.nii.gz", tmp_path / "registered.json", box, True,
                                     tmp_path / "out_lesion.nii.gz", tmp_path / "out_brain.nii.gz")
    out = nib.load(tmp_path / "out_lesion.nii.gz")
    share = np.asarray(out.dataobj)
    assert np.allclose(out.affine, box_affine(box["shape"], 2.0, box["center_mm"]))
    np.testing.assert_allclose(_centroid(share, out.affine), center - [0, 0, 12.0], atol=0.5)
    sphere_ml = 4 / 3 * np.pi * 6.0 ** 3 / 1000
    assert info["native_lesion_ml"] == pytest.approx(sphere_ml, rel=0.05)
    assert info["carried_lesion_ml"] == pytest.approx(info["native_lesion_ml"], rel=0.05)
    brain = np.asarray(nib.load(tmp_path / "out_brain.nii.gz").dataobj)
    assert brain.shape == tuple(box["shape"]) and info["brain_ml"] == pytest.approx(brain.sum() * 0.008)
    write_nifti(tmp_path / "empty.nii.gz", np.zeros_like(lesion), native_aff, np.uint8)
    with pytest.raises(ValueError, match="empty.nii.gz: the lesion mask is empty"):
        msstudy.carry_lesion_mask(tmp_path / "empty.nii.gz", tmp_path / "registered.nii.gz",
                                  tmp_path / "registered_mask.nii.gz", tmp_path / "registered.json", box, True,
                                  tmp_path / "x.nii.gz", tmp_path / "y.nii.gz")


def test_relevance_tables_and_their_statistics(tmp_path):
    rng = np.random.default_rng(0)
    shape, aff = (10, 10, 10), np.diag([2.0, 2.0, 2.0, 1.0])
    scans = [("sub-01", "MS"), ("sub-02", "MS"), ("sub-03", "MS"), ("sub-04", "CN"), ("sub-05", "MS")]
    maps = rng.normal(0, 1, (*shape, len(scans))).astype(np.float32)
    masks, expected = {}, []
    brain = np.zeros(shape, np.uint8)
    brain[1:9, 1:9, 1:9] = 1
    for i, (pid, dx) in enumerate(scans):
        if dx != "MS":
            continue
        lesion = np.zeros(shape, np.float32)
        lesion[2:2 + i + 1, 3:5, 3:5] = 1.0
        maps[2:2 + i + 1, 3:5, 3:5, i] += 2.0  # relevance on the lesions
        write_nifti(tmp_path / f"{pid}_lesion.nii.gz", lesion, aff)
        write_nifti(tmp_path / f"{pid}_brain.nii.gz", brain, aff, np.uint8)
        masks[(pid, "01")] = (tmp_path / f"{pid}_lesion.nii.gz", tmp_path / f"{pid}_brain.nii.gz")
    for i, (pid, dx) in enumerate(scans):
        pos = np.clip(maps[..., i], 0, None)
        lm = np.zeros(shape, bool)
        if dx == "MS":
            lm[2:2 + i + 1, 3:5, 3:5] = True
        expected.append((lm.sum() * 0.008, pos[lm].sum() / pos.sum(), maps[..., i].astype(float).sum()))
    write_nifti(tmp_path / "maps.nii.gz", maps, aff)
    write_tsv(tmp_path / "index.tsv", pd.DataFrame({"participant_id": [p for p, _ in scans], "session_id": "01",
                                                    "diagnosis": [d for _, d in scans], "truth": [d for _, d in scans],
                                                    "predicted": "MS", "volume": range(len(scans))}))
    runs = [{"split": "01", "run": "01", "heatmaps": tmp_path / "maps.nii.gz", "index": tmp_path / "index.tsv"}]
    table = msstudy.relevance_table(runs, masks, lesion_groups=["MS"])
    assert len(table) == 5
    with pytest.raises(ValueError, match="sub-05 ses-01 \\(MS\\) has no lesion mask"):
        msstudy.relevance_table(runs, {k: v for k, v in masks.items() if k[0] != "sub-05"}, lesion_groups=["MS"])
    np.testing.assert_allclose(table["lesion_ml"], [e[0] for e in expected])
    np.testing.assert_allclose(table["relevance_sum"], [e[2] for e in expected], rtol=1e-5)
    ms = table["diagnosis"] == "MS"
    np.testing.assert_allclose(table.loc[ms, "lesion_relevance"], [e[1] for e, s in zip(expected, ms) if s], rtol=1e-5)
    assert np.isnan(table.loc[~ms, "lesion_relevance"]).all()
    # the same scans tested again in a second run: per run both rows; pooled, each scan once
    table = pd.concat([table, table.assign(run=2)], ignore_index=True)
    summary = msstudy.relevance_summary(table, n_resamples=999).set_index(["split", "run"])
    assert summary.loc[("1", "1"), "pearson_r"] == pytest.approx(summary.loc[("1", "2"), "pearson_r"])
    assert summary.loc[("all", "all"), "n_scans"] == 5
    summary = summary.reset_index().set_index("split")
    table = table[table.run == 1]
    pooled = summary.loc["all"]
    r = stats.pearsonr(table["lesion_ml"], table["relevance_sum"]).statistic
    assert pooled["pearson_r"] == pytest.approx(r)
    les = table[ms]
    assert pooled["lesion_relevance_mean"] == pytest.approx(les["lesion_relevance"].mean())
    assert pooled["chance_mean"] == pytest.approx(les["chance"].mean())
    assert pooled["wilcoxon_p"] == pytest.approx(
        stats.wilcoxon(les["lesion_relevance"] - les["chance"], alternative="greater").pvalue)
    assert pooled["lesion_relevance_mean"] > 2 * pooled["chance_mean"]  # relevance was put on the lesions


def _run_files(tmp_path, name, task, truth, probs, epochs):
    classes = ["CN", "MS"] if task == "CN_vs_MS" else ["CN", "AD"]
    pred = pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(len(truth))], "session_id": "01",
                         "diagnosis": truth, "set": "test", "truth": truth,
                         "predicted": [classes[int(p > 0.5)] for p in probs],
                         f"prob_{classes[0]}": 1 - np.asarray(probs), f"prob_{classes[1]}": probs})
    write_tsv(tmp_path / f"{name}_predictions.tsv", pred)
    write_json(tmp_path / f"{name}_summary.json", {"task": task, "classes": classes, "epochs": epochs, "best_epoch": 1,
                                                   "seconds": 1.5, "n_train": 10, "n_test": len(truth)})
    return {"predictions": tmp_path / f"{name}_predictions.tsv", "summary": tmp_path / f"{name}_summary.json"}


def test_comparison_table_and_figure_read_back(tmp_path):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    truth = ["CN"] * 5 + ["MS"] * 5
    runs = []
    for arm in ("finetune", "scratch"):
        for split in (1, 2):
            probs = np.clip(rng.random(10) * 0.6 + (0.4 if arm == "finetune" else 0.2) * (np.arange(10) >= 5), 0, 1)
            runs.append({"arm": arm, "split": split, "run": 1,
                         **_run_files(tmp_path, f"{arm}{split}", "CN_vs_MS", truth, probs, 3 + split)})
    table, summary = msstudy.comparison_table(runs)
    for r, row in zip(runs, table.itertuples()):
        pred = pd.read_csv(r["predictions"], sep="\t")
        assert row.roc_auc == pytest.approx(roc_auc_score(pred["truth"] == "MS", pred["prob_MS"]))
    s = summary.set_index("arm")
    assert s.loc["finetune", "roc_auc_mean"] == pytest.approx(table[table.arm == "finetune"].roc_auc.mean())
    diff = table[table.arm == "finetune"].roc_auc.to_numpy() - table[table.arm == "scratch"].roc_auc.to_numpy()
    assert s.loc["finetune-scratch", "roc_auc_mean"] == pytest.approx(diff.mean())
    write_tsv(tmp_path / "runs.tsv", table)
    rel = pd.DataFrame({"participant_id": ["sub-1", "sub-2", "sub-3"], "session_id": "01", "diagnosis": ["MS", "MS", "CN"],
                        "lesion_ml": [1.0, 3.0, 0.0], "lesion_relevance": [0.1, 0.3, np.nan],
                        "chance": [0.001, 0.003, np.nan], "relevance_sum": [0.5, 1.5, -0.2]})
    write_tsv(tmp_path / "rel.tsv", rel)
    write_tsv(tmp_path / "relsum.tsv", msstudy.relevance_summary(rel.assign(split=1, run=1), n_resamples=99))
    shown = msstudy.study_figure(tmp_path / "runs.tsv", tmp_path / "rel.tsv", tmp_path / "relsum.tsv",
                                 tmp_path / "fig.png", {"dpi": 50})
    assert shown["bars"][("finetune", "roc_auc")][0] == pytest.approx(s.loc["finetune", "roc_auc_mean"])
    assert shown["bars"][("scratch", "balanced_accuracy")][0] == pytest.approx(s.loc["scratch", "balanced_accuracy_mean"])
    np.testing.assert_allclose(shown["points"], rel[["lesion_ml", "relevance_sum"]].to_numpy())
    assert shown["pearson_r"] == pytest.approx(stats.pearsonr(rel.lesion_ml, rel.relevance_sum).statistic)


def test_plan_paths_and_lesion_sessions(default_config):
    study = default_config["ms_study"]
    runs = msstudy.planned_runs("res", study, msstudy.ARMS, ["01", "02"], ["01"])
    assert len(runs) == 6 and len({r["model"] for r in runs}) == 6
    assert {msstudy.arm_task(study, a) for a in msstudy.ARMS} == {"CN_vs_AD", "CN_vs_MS"}
    cohort = pd.DataFrame({"participant_id": ["sub-001", "sub-002", "sub-003"], "diagnosis": ["MS", "CN", "MS"]})
    sessions = [("001", "01"), ("001", "02"), ("002", "01"), ("003", "01")]
    assert msstudy.lesion_sessions(cohort, ["MS"], sessions) == [("001", "01"), ("003", "01")]  # baselines
    assert msstudy.lesion_sessions(cohort, [], sessions) == []
    with_lesions = msstudy.targets("res", study, "png", True)
    assert len(with_lesions) == 5 and msstudy.targets("res", study, "png", False) == with_lesions[:2]


def test_pretraining_never_sees_the_target_tasks_held_out_participants(tmp_path):
    """Controls are in both tasks: a CN held out of CN vs MS (validation or test) is moved to the test set of
    the CN vs AD split the model is pre-trained on (baseline session only)."""
    source = pd.DataFrame([dict(participant_id=f"sub-{i}", session_id=s, set=st, diagnosis=dx)
                           for i, st, dx in [(1, "train", "CN"), (2, "train", "CN"), (3, "validation", "CN"),
                                             (4, "test", "CN"), (5, "train", "AD"), (6, "validation", "AD"),
                                             (7, "test", "AD"), (8, "train", "CN")]
                           for s in (["01", "02"] if st != "test" else ["01"])])
    target = pd.DataFrame([dict(participant_id=p, session_id="01", set=st, diagnosis=dx)
                           for p, st, dx in [("sub-1", "test", "CN"), ("sub-3", "validation", "CN"), ("sub-2", "train", "CN"),
                                             ("sub-9", "test", "MS"), ("sub-10", "validation", "MS"),
                                             ("sub-8", "train", "CN"), ("sub-11", "train", "MS")]])
    write_tsv(tmp_path / "source.tsv", source)
    write_tsv(tmp_path / "target.tsv", target)
    out = msstudy.pretrain_split(tmp_path / "source.tsv", tmp_path / "target.tsv", tmp_path / "out.tsv")
    fitted = set(out.loc[out.set.isin(["train", "validation"]), "participant_id"])
    assert fitted == {"sub-2", "sub-5", "sub-6", "sub-8"}  # sub-1 (target test) and sub-3 (validation) left
    moved = out[out.participant_id.isin(["sub-1", "sub-3"])]
    assert (moved.set == "test").all() and list(moved.session_id) == ["01", "01"]
    assert len(out[out.participant_id == "sub-2"]) == 2  # the others keep every session
