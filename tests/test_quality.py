"""Patches, labels and folds (braindl.patches); the quality regression, tables and figures (braindl.quality)."""

import json

import numpy as np
import pandas as pd
import pytest

from braindl import dose, patches, quality
from braindl.patches import DoseError
from braindl.io import write_json, write_nifti, write_tsv

GROUPS = {"low": [0.5, 1], "medium": [5, 10], "high": [25, 50, 100]}
LEVELS = [0.5, 1, 5, 10, 25, 50, 100]


def test_patches_reject_background_and_cover_three_planes():
    vol = np.zeros((40, 40, 40), np.float32)
    vol[10:30, 12:28, 8:32] = 1.0
    rng = np.random.default_rng(0)
    found, planes, stats = patches.extract_patches(vol, 16, 400, 30, 0.125, rng)
    assert found.shape == (90, 16, 16) and np.bincount(planes).tolist() == [30, 30, 30]
    assert (found.mean((1, 2)) >= 0.125 * vol.mean()).all()
    assert all(0 < s["foreground"] < 400 for s in stats.values())
    # a volume thinner than the patch is zero padded; few foreground patches: all of them kept
    flat = np.ones((40, 40, 6), np.float32)
    p, pl, st = patches.extract_patches(flat, 16, 50, 100, 0.125, rng)
    assert p.shape[1:] == (16, 16) and st["axial"]["kept"] == st["axial"]["foreground"] <= 50


def test_one_job_cuts_the_patches_of_every_level_of_a_scan(tmp_path):
    """run_scan_patches (rule dose_patches): each level's patches and sidecar are those of run_patches on it
    alone, with its own seed; levels that differ between the inputs are refused before any is read."""
    rng = np.random.default_rng(1)
    recons, seeds, outs = {}, {}, {}
    for i, lv in enumerate(("1", "100")):
        vol = np.zeros((40, 40, 40), np.float32)
        vol[8:32, 10:30, 6:34] = rng.random((24, 20, 28)) * (1 + i)
        write_nifti(tmp_path / f"r{lv}.nii.gz", vol, np.eye(4))
        recons[lv], seeds[lv], outs[lv] = tmp_path / f"r{lv}.nii.gz", 10 + i, (tmp_path / f"p{lv}.npy", tmp_path / f"p{lv}.json")
    settings = {"patch_size": 16, "candidates_per_plane": 40, "patches_per_plane": 5, "background_fraction": 0.125}
    metas = patches.run_scan_patches(recons, settings, seeds, outs)
    for lv in recons:
        alone = patches.run_patches(recons[lv], settings, seeds[lv], tmp_path / "a.npy", tmp_path / "a.json")
        np.testing.assert_array_equal(np.load(outs[lv][0]), np.load(tmp_path / "a.npy"))
        assert metas[lv] == alone and json.loads(outs[lv][1].read_text())["Seed"] == seeds[lv]
    assert np.load(outs["1"][0]).shape == (15, 16, 16) and not np.array_equal(np.load(outs["1"][0]), np.load(outs["100"][0]))
    with pytest.raises(DoseError, match="levels differ or are missing"):
        patches.run_scan_patches(recons, settings, {"1": 10}, {lv: (tmp_path / f"q{lv}.npy", tmp_path / f"q{lv}.json")
                                                               for lv in recons})
    assert not list(tmp_path.glob("q*"))


def test_groups_and_scored_levels():
    g = patches.group_of(LEVELS, GROUPS)
    assert g[0.5] == "low" and g[10] == "medium" and g[100] == "high"
    with pytest.raises(DoseError, match="no group"):
        patches.group_of([0.5, 2], GROUPS)
    with pytest.raises(DoseError, match="two groups"):
        patches.group_of([1], {"a": [1], "b": [1]})
    picks = patches.scored_levels("sub-01", LEVELS, GROUPS, 0)
    assert len(picks) == 3 and [g[p] for p in picks] == ["low", "medium", "high"]
    assert picks == patches.scored_levels("sub-01", LEVELS, GROUPS, 0)
    assert len({tuple(patches.scored_levels(f"sub-{i:02d}", LEVELS, GROUPS, 0)) for i in range(20)}) > 1
    # a group without configured levels (left over from config.yaml after a merge) is not used
    assert patches.scored_levels("sub-01", [1, 100], GROUPS, 0) == [1.0, 100.0]
    assert patches.group_ranks([1, 100], GROUPS) == {"low": 0.0, "high": 1.0}


def test_synthetic_scores_follow_the_rule(tmp_path):
    rng = np.random.default_rng(0)
    ref = np.zeros((24, 24, 24), np.float32)
    ref[4:20, 4:20, 4:20] = 0.8
    write_nifti(tmp_path / "ref.nii.gz", ref, np.eye(4))
    noisy = np.clip(ref + rng.normal(0, 0.3, ref.shape), 0, 1).astype(np.float32)
    write_nifti(tmp_path / "noisy.nii.gz", noisy, np.eye(4))
    rows = [dict(participant_id="sub-01", session_id="01", level=100, recon=tmp_path / "ref.nii.gz",
                 reference=tmp_path / "ref.nii.gz"),
            dict(participant_id="sub-01", session_id="01", level=1, recon=tmp_path / "noisy.nii.gz",
                 reference=tmp_path / "ref.nii.gz")]
    t = patches.synthetic_scores(rows, GROUPS, LEVELS)
    high, low = t.iloc[0], t.iloc[1]
    assert high["ssim"] == 1.0 and (high[list(patches.METRICS)] == 3.0).all()
    q = low["ssim"]
    assert 0 < q < 0.9 and low["gqr"] == float(patches.half_round(3 * 0.7 * q))
    assert low["pr"] == float(patches.half_round(3 * 0.3 * q)) and low["group"] == "low"
    assert all((t[m] * 2 == np.round(t[m] * 2)).all() for m in patches.METRICS)


def test_user_scores_are_validated(tmp_path):
    good = pd.DataFrame({"participant_id": ["sub-01"], "session_id": ["01"], "level": [5], "gqr": [2.5],
                         "pr": [3], "dc": [2]})
    write_tsv(tmp_path / "s.tsv", good)
    assert patches.read_scores(tmp_path / "s.tsv", LEVELS)["level"].tolist() == [5.0]
    write_tsv(tmp_path / "b.tsv", good.assign(gqr=2.3))
    with pytest.raises(DoseError, match="b.tsv: column gqr"):
        patches.read_scores(tmp_path / "b.tsv", LEVELS)
    write_tsv(tmp_path / "l.tsv", good.assign(level=7))
    with pytest.raises(DoseError, match="levels"):
        patches.read_scores(tmp_path / "l.tsv", LEVELS)
    write_tsv(tmp_path / "c.tsv", good.drop(columns="dc"))
    with pytest.raises(DoseError, match="missing columns"):
        patches.read_scores(tmp_path / "c.tsv", LEVELS)


def test_folds_fix_the_test_set_and_nest_training_pools():
    ids = [f"sub-{i:02d}" for i in range(13)]
    folds = patches.quality_folds(ids, 3, 2, 6, seed=0)
    assert len(folds) == 6 and len({tuple(f["test"]) for f in folds}) == 1
    for f in folds:
        assert len(f["validation"]) == 2 and len(f["pool"]) == 8
        assert not set(f["test"]) & set(f["validation"]) and not set(f["pool"]) & set(f["validation"] + f["test"])
    # the first five folds validate on disjoint pairs; the sixth on a pair no fold had (002: 6 folds, 10 patients)
    assert len({p for f in folds[:5] for p in f["validation"]}) == 10
    assert len({frozenset(f["validation"]) for f in folds}) == 6
    assert patches.quality_folds(ids, 3, 2, 6, seed=0) == folds
    many = patches.quality_folds(ids, 3, 2, 45, seed=0)  # every pair of the 10, once
    assert len({frozenset(f["validation"]) for f in many}) == 45
    with pytest.raises(DoseError, match="46 folds need 46 different validation groups of 2; 10 patients have 45"):
        patches.quality_folds(ids, 3, 2, 46, seed=0)
    with pytest.raises(DoseError, match="need 2 for validation"):
        patches.quality_folds(ids[:5], 3, 2, 1, seed=0)


def _patch_data(tmp_path, n_patients=6):
    """Patches whose brightness encodes the scores: the regression is learnable."""
    rng = np.random.default_rng(0)
    files, rows = {}, []
    for i in range(n_patients):
        pid = f"sub-{i:02d}"
        for level, score in ((1, 0.5), (10, 1.5), (100, 3.0)):
            p = (score / 3 + 0.05 * rng.standard_normal((12, 32, 32))).astype(np.float16)
            f = tmp_path / f"{pid}_{level}.npy"
            np.save(f, p)
            files[(pid, "01", float(level))] = f
            rows.append(dict(participant_id=pid, session_id="01", level=level, gqr=score, pr=score, dc=score))
    write_tsv(tmp_path / "scores.tsv", pd.DataFrame(rows))
    return files, tmp_path / "scores.tsv", [f"sub-{i:02d}" for i in range(n_patients)]


SETTINGS = {"model": "resnet18", "freeze": "head_only", "weights": "none", "learning_rate": 1e-3, "batch_size": 10,
            "max_epochs": 3, "early_stopping_patience": 10, "seed": 0, "device": "cpu"}


def _out(tmp_path, name):
    return {k: tmp_path / f"{name}_{k}.{'json' if k == 'summary' else 'tsv'}" for k in ("predictions", "history", "summary")}


def test_train_quality_head_only_writes_consistent_outputs(tmp_path):
    files, scores, ids = _patch_data(tmp_path)
    fold = patches.quality_folds(ids, 2, 1, 1, seed=0)[0]
    out = _out(tmp_path, "a")
    s = quality.train_quality(files, scores, fold, 2, SETTINGS, 0, out, tmp_path / "state")
    assert s["trainable_parameters"] == 512 * 3 + 3  # flatten + one linear layer of three outputs
    assert s["train_patients"] == fold["pool"][:2] and s["n_train_patches"] == 2 * 3 * 12
    pred = pd.read_csv(out["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
    test = pred[pred["set"] == "test"]
    assert len(test) == 2 * 3 * 12 and set(test["participant_id"]) == set(fold["test"])
    assert s["mae"] == pytest.approx(np.mean([np.abs(test[f"true_{m}"] - test[f"pred_{m}"]).mean()
                                              for m in patches.METRICS]))
    # the brightness encodes the score: three epochs of the head beat the constant that predicts the
    # training patients' mean score (the MAE a model that learnt nothing reaches)
    table = pd.read_csv(scores, sep="\t")
    train_mean = table[table.participant_id.isin(s["train_patients"])][list(patches.METRICS)].mean()
    constant = np.mean([np.abs(test[f"true_{m}"] - train_mean[m]).mean() for m in patches.METRICS])
    assert s["mae"] < 0.85 * constant
    assert len(pd.read_csv(out["history"], sep="\t")) == 3 and not (tmp_path / "state").exists()
    s60 = quality.train_quality(files, scores, fold, 2, {**SETTINGS, "freeze": "first_60_percent", "max_epochs": 1},
                                0, _out(tmp_path, "b"), tmp_path / "state")
    assert s60["trainable_parameters"] > 100 * s["trainable_parameters"]


def test_one_job_trains_its_runs_as_each_alone(tmp_path):
    """train_quality_runs (a dose_train job of several runs): each run's outputs equal those of
    train_quality on it alone; the checkpoints are gone at the end; lists that do not match the runs are
    refused before any training."""
    files, scores, ids = _patch_data(tmp_path)
    folds = patches.quality_folds(ids, 2, 1, 2, seed=0)
    runs = [{"n": 1, "fold": folds[0], "run": 0}, {"n": 2, "fold": folds[0], "run": 1},
            {"n": 1, "fold": folds[1], "run": 0}]
    settings = {**SETTINGS, "max_epochs": 2}
    out = {k: [str(tmp_path / f"job{i}_{k}.{'json' if k == 'summary' else 'tsv'}") for i in range(3)]
           for k in quality.RUN_OUTPUTS}
    together = quality.train_quality_runs(files, scores, runs, settings, out, checkpoint_s=0)
    alone = quality.train_quality(files, scores, folds[0], 2, settings, 1, _out(tmp_path, "alone"),
                                  tmp_path / "alone_state")
    second = together[1]
    assert second["fold"] == 0 and second["n_train"] == 2 and second["run"] == 1
    assert {k: v for k, v in second.items() if k != "seconds"} == {k: v for k, v in alone.items() if k != "seconds"}
    pd.testing.assert_frame_equal(pd.read_csv(out["predictions"][1], sep="\t"),
                                  pd.read_csv(_out(tmp_path, "alone")["predictions"], sep="\t"))
    assert [s["fold"] for s in together] == [0, 0, 1] and together[2]["train_patients"] == folds[1]["pool"][:1]
    assert json.loads((tmp_path / "job2_summary.json").read_text())["mae"] == together[2]["mae"]
    assert not list(tmp_path.glob("*_state"))
    with pytest.raises(DoseError, match="dose regression runs of one job: the file lists differ in length"):
        quality.train_quality_runs(files, scores, runs, settings, {**out, "history": out["history"][:2]})
    with pytest.raises(DoseError, match="no output summary files"):
        quality.train_quality_runs(files, scores, runs, settings, {k: out[k] for k in ("predictions", "history")})


def test_table_adds_an_ensemble_of_repeated_runs(tmp_path):
    files, scores, ids = _patch_data(tmp_path)
    fold = patches.quality_folds(ids, 2, 1, 1, seed=0)[0]
    runs = []
    for r in range(2):
        out = _out(tmp_path, f"r{r}")
        quality.train_quality(files, scores, fold, 1, {**SETTINGS, "max_epochs": 1}, r, out, tmp_path / f"st{r}")
        runs.append({k: str(v) for k, v in out.items()})
    t = quality.quality_table(runs)
    assert t["kind"].tolist().count("run") == 2 and t["kind"].tolist().count("ensemble") == 1
    preds = [pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str}) for r in runs]
    mean = preds[0].copy()
    for m in patches.METRICS:
        mean[f"pred_{m}"] = (preds[0][f"pred_{m}"] + preds[1][f"pred_{m}"]) / 2
    ens = t[t["kind"] == "ensemble"].iloc[0]
    assert ens["mae"] == pytest.approx(quality.mae_of(mean[mean["set"] == "test"])["mae"])
    write_tsv(tmp_path / "table.tsv", t)
    runs0 = t[(t["kind"] == "run") & (t["run"] == 0)]
    points = quality.sizes_figure(tmp_path / "table.tsv", tmp_path / "sizes.png", {"dpi": 60})
    assert sorted(points["mae"]) == pytest.approx(sorted(runs0["mae"]))  # every fold's first run, as plotted
    bars = quality.regimes_figure(tmp_path / "table.tsv", tmp_path / "regimes.png", {"dpi": 60})
    assert bars.set_index("model").loc["resnet18", "mean"] == pytest.approx(runs0["mae"].mean())
    assert (tmp_path / "sizes.png").stat().st_size > 1000 and (tmp_path / "regimes.png").stat().st_size > 1000


def test_levels_figure(tmp_path):
    """002 Fig. 1: one panel per level, lowest first, each the same axial slice through the activity's
    centre, cropped to the activity."""
    recons, vols = {}, {}
    rng = np.random.default_rng(0)
    for v in (1, 10, 100):
        vol = np.zeros((20, 20, 12), np.float32)
        vol[4:16, 5:15, 5:11] = rng.uniform(0.2, 1.0, (12, 10, 6))  # centre of the activity: slice 8
        write_nifti(tmp_path / f"{v}.nii.gz", vol, np.eye(4))
        recons[float(v)], vols[v] = tmp_path / f"{v}.nii.gz", vol
    shown = quality.levels_figure(recons, tmp_path / "levels.png", {"dpi": 60})
    panels = shown[shown.artist == "image"]
    assert panels.title.tolist() == ["1 %", "10 %", "100 %"]
    for v, image in zip((1, 10, 100), panels.image):
        np.testing.assert_allclose(image, np.rot90(vols[v][4:16, 5:15, 8]))
