"""braindl.atlas: regions of any labelled atlas, region metrics and ranks, robustness between runs and
localisation against a known mask."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from braindl import atlas as A

SHAPE = (10, 8, 6)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def test_region_names_merge_hemispheres():
    assert A.region_name("Hippocampus_L", True) == "Hippocampus"
    assert A.region_name("Left_Amygdala", True) == "Amygdala"
    assert A.region_name("Frontal Pole R", True) == "Frontal Pole"
    assert A.region_name("Hippocampus_L", False) == "Hippocampus_L"
    assert A.region_name("Vermis_1_2", True) == "Vermis_1_2"


@pytest.fixture()
def custom_atlas(tmp_path):
    """Three labels: left and right halves of region A (x < 5), region B elsewhere in the upper half."""
    labels = np.zeros(SHAPE, np.int16)
    labels[:5, :4] = 1
    labels[5:, :4] = 2
    labels[:, 4:, 3:] = 3
    nib.save(nib.Nifti1Image(labels, AFFINE), tmp_path / "atlas.nii.gz")
    pd.DataFrame(dict(index=[1, 2, 3], name=["A_L", "A_R", "B"])).to_csv(tmp_path / "atlas.tsv", sep="\t", index=False)
    return dict(name="unused", image=str(tmp_path / "atlas.nii.gz"), labels=str(tmp_path / "atlas.tsv"),
                merge_hemispheres=True), labels


def test_custom_atlas_is_resampled_and_merged(custom_atlas):
    settings, labels = custom_atlas
    got, table = A.load_atlas(settings, AFFINE, SHAPE)
    np.testing.assert_array_equal(got, labels)
    assert table.region.tolist() == ["A", "A", "B"]
    # on a grid of half the resolution, nearest neighbour keeps the labels
    coarse, _ = A.load_atlas(settings, np.diag([4.0, 4.0, 4.0, 1.0]), (5, 4, 3))
    np.testing.assert_array_equal(coarse, labels[::2, ::2, ::2])


def test_bad_atlases_are_refused(custom_atlas, tmp_path):
    settings, _ = custom_atlas
    with pytest.raises(A.AtlasError, match="not found"):
        A.load_atlas({**settings, "image": str(tmp_path / "none.nii.gz")}, AFFINE, SHAPE)
    pd.DataFrame(dict(index=[1, 2], name=["A_L", "A_R"])).to_csv(tmp_path / "short.tsv", sep="\t", index=False)
    with pytest.raises(A.AtlasError, match=r"labels \[3\].*have no name"):
        A.load_atlas({**settings, "labels": str(tmp_path / "short.tsv")}, AFFINE, SHAPE)


def test_bundled_aal3_on_a_template_grid():
    from braindl.crop import box_affine, default_center

    aff = box_affine((48, 57, 48), 4.0, default_center(2.0))
    labels, table = A.load_atlas(dict(name="AAL3", image=None, labels=None, merge_hemispheres=True), aff, (48, 57, 48))
    assert labels.max() > 100 and "Hippocampus" in set(table.region)
    assert (table.region == "Hippocampus").sum() == 2


def test_region_metrics_rank_the_relevant_region_first(custom_atlas):
    settings, labels = custom_atlas
    _, table = A.load_atlas(settings, AFFINE, SHAPE)
    patients = np.where(labels == 3, 2.0, 0.1).astype(np.float32)
    patients[0, 0, 0] = -50  # negative relevance is not evidence for the disease: ignored
    controls = np.full(SHAPE, 0.1, np.float32)
    tp = np.where(labels == 3, 3.0, 0.1).astype(np.float32)
    df = A.region_metrics(patients, controls, labels, table, tp).set_index("region")
    n_a, n_b = (labels > 0).sum() - (labels == 3).sum(), (labels == 3).sum()
    assert df.loc["A", "n_voxels"] == n_a and df.loc["B", "n_voxels"] == n_b
    np.testing.assert_allclose(df.loc["B", "density"], 2.0)
    np.testing.assert_allclose(df.loc["A", "sum_patients"], 0.1 * (n_a - 1))
    # 004 study 1's gain: true positives over controls; every disease-class scan over controls beside it
    np.testing.assert_allclose(df.loc["B", "gain"], 30.0)
    np.testing.assert_allclose(df.loc["B", "gain_all"], 20.0)
    assert df.loc["B", "rank_density"] == 1 and df.loc["B", "rank_gain"] == 1
    assert set(df.convention) == {"positive"}
    # controls without positive relevance: gain undefined, ranked last
    df = A.region_metrics(patients, -controls, labels, table, tp)
    assert df.gain.isna().all() and (df.rank_gain == 1).all()
    # no true positive in the run: gain n/a, gain_all still there
    df = A.region_metrics(patients, controls, labels, table).set_index("region")
    assert np.isnan(df.loc["B", "gain"]) and df.loc["B", "gain_all"] == pytest.approx(20.0)


def test_signed_methods_are_summed_by_absolute_value(custom_atlas):
    """004 study 3: "sum as the sum of absolute values in each region"; study 1: "the absolute value of
    the GB gradients". A region of strong negative attribution ranks first by absolute value and
    last by positive part."""
    settings, labels = custom_atlas
    _, table = A.load_atlas(settings, AFFINE, SHAPE)
    signed = np.where(labels == 3, -2.0, 0.1).astype(np.float32)
    controls = np.full(SHAPE, 0.1, np.float32)
    absolute = A.region_metrics(signed, controls, labels, table, signed, "absolute").set_index("region")
    positive = A.region_metrics(signed, controls, labels, table, signed, "positive").set_index("region")
    np.testing.assert_allclose(absolute.loc["B", "density"], 2.0)
    assert absolute.loc["B", "rank_sum"] == 1 and positive.loc["B", "sum"] == 0
    assert set(absolute.convention) == {"absolute"}
    from braindl.architectures import ATLAS_CONVENTION, HEATMAP_METHODS
    assert set(ATLAS_CONVENTION) == set(HEATMAP_METHODS)
    assert {m for m, c in ATLAS_CONVENTION.items() if c == "absolute"} == {"guided_backprop", "gradient_x_input",
                                                                           "occlusion"}
    with pytest.raises(ValueError, match="unknown atlas convention"):
        A.relevance_part(signed, "signed")


def test_run_regions_reads_each_scan_by_its_convention(custom_atlas, tmp_path):
    """The convention applies to each scan before the group mean: two scans of opposite sign in a region
    cancel in a mean of signed maps, not in a mean of absolute values."""
    settings, labels = custom_atlas
    (tmp_path / "pack.json").write_text(json.dumps(dict(Shape=[1, *SHAPE], Affine=AFFINE.tolist())))
    on_b = np.where(labels == 3, 1.0, 0.0)
    run = dict(split="01", run="01", **_write_run(tmp_path, "r", [on_b, -on_b, 0.1 * on_b], ["AD", "AD", "CN"]))
    out = {k: tmp_path / f"{k}.tsv" for k in ("regions", "summary")}
    for convention, density in (("absolute", 1.0), ("positive", 0.5)):
        summary = A.run_regions([run], "AD", "CN", settings, tmp_path / "pack.json", out["regions"],
                                out["summary"], convention=convention).set_index("region")
        np.testing.assert_allclose(summary.loc["B", "density"], density)
        assert summary.loc["B", "convention"] == convention and summary.loc["B", "n_runs_tp"] == 1


def _write_run(d, name, maps, truth):
    nib.save(nib.Nifti1Image(np.stack(maps, -1).astype(np.float32), AFFINE), d / f"{name}.nii.gz")
    pd.DataFrame(dict(participant_id=[f"sub-{i}" for i in range(len(truth))], session_id="01", truth=truth,
                      outcome="TP")).to_csv(d / f"{name}.tsv", sep="\t", index=False)
    return dict(heatmaps=d / f"{name}.nii.gz", index=d / f"{name}.tsv")


def test_regions_robustness_and_ground_truth(custom_atlas, tmp_path):
    settings, labels = custom_atlas
    (tmp_path / "pack.json").write_text(json.dumps(dict(Shape=[1, *SHAPE], Affine=AFFINE.tolist())))
    rng = np.random.default_rng(0)
    on_b = np.where(labels == 3, 1.0, 0.0)
    # method "good": relevance on B (the altered region) in both runs; "noisy": random
    methods = {}
    for label, make in (("good", lambda: on_b + 0.01 * rng.random(SHAPE)), ("noisy", lambda: rng.random(SHAPE))):
        runs = [dict(split=s, run="01", **_write_run(tmp_path, f"{label}{s}", [make(), make(), rng.random(SHAPE)],
                                                     ["AD", "AD", "CN"])) for s in ("01", "02")]
        out = {k: tmp_path / f"{label}_{k}.tsv" for k in ("regions", "summary")}
        summary = A.run_regions(runs, "AD", "CN", settings, tmp_path / "pack.json", out["regions"], out["summary"])
        assert set(summary.region) == {"A", "B"}
        per_run = pd.read_csv(out["regions"], sep="\t", dtype={"split": str})
        assert sorted(per_run.split.unique()) == ["01", "02"]
        # robustness reads each run's mean disease map: write them as group maps would
        nib.save(nib.Nifti1Image(np.stack([np.asarray(nib.load(r["heatmaps"]).dataobj)[..., :2].mean(-1)
                                           for r in runs], -1), AFFINE), tmp_path / f"{label}_runs.nii.gz")
        pd.DataFrame(dict(split=["01", "02"], run="01", volume=[0, 1])).to_csv(tmp_path / f"{label}_runs.tsv",
                                                                            sep="\t", index=False)
        methods[label] = dict(runs=runs, summary=out["summary"], regions=out["regions"],
                              runs_nii=tmp_path / f"{label}_runs.nii.gz", runs_tsv=tmp_path / f"{label}_runs.tsv")
    rob = A.run_robustness({k: dict(runs=v["runs_nii"], runs_tsv=v["runs_tsv"], regions=v["regions"])
                            for k, v in methods.items()}, 1, tmp_path / "pairs.tsv", tmp_path / "rob.tsv")
    rob = rob.set_index("method")
    assert rob.loc["good", "overlap_density_mean"] == 100.0
    assert rob.loc["good", "l2_mean"] < rob.loc["noisy", "l2_mean"]
    assert rob.loc["good", "compared"] == "runs of different splits"
    mask = np.where(labels == 3, 1, 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, AFFINE), tmp_path / "mask.nii.gz")
    gt = A.run_groundtruth({k: dict(runs=v["runs"], summary=v["summary"]) for k, v in methods.items()},
                           tmp_path / "mask.nii.gz", "AD", settings, tmp_path / "pack.json", tmp_path / "gt.tsv")
    gt = gt.set_index("method")
    assert gt.loc["good", "share_in_mask"] > 0.9 > gt.loc["noisy", "share_in_mask"]
    np.testing.assert_allclose(gt.loc["good", "chance_share"], mask[labels > 0].mean())
    assert gt.loc["good", "mean_rank_density"] == 1 and gt.loc["good", "precision_top_density"] == 1.0
    assert gt.loc["good", "altered_regions"] == "B" and gt.loc["good", "n_scans"] == 4
    assert gt.loc["good", "rank_accuracy"] > 0.9 and gt.loc["good", "pointing_game"] == 1.0
    assert gt.loc["good", "chance_rank"] == gt.loc["good", "chance_pointing"] == gt.loc["good", "chance_share"]
    # a signed method whose relevance in the mask is negative: found when read by absolute value, not as
    # positive evidence
    flipped = [dict(split=s, run="01", **_write_run(tmp_path, f"neg{s}", [-on_b + 0.01, -on_b + 0.01, on_b],
                                                     ["AD", "AD", "CN"])) for s in ("01", "02")]
    signed = {c: dict(runs=flipped, summary=methods["good"]["summary"], convention=c) for c in ("absolute", "positive")}
    gt2 = A.run_groundtruth(signed, tmp_path / "mask.nii.gz", "AD", settings, tmp_path / "pack.json",
                            tmp_path / "gt2.tsv").set_index("method")
    assert gt2.loc["absolute", "share_in_mask"] > 0.95 and gt2.loc["absolute", "pointing_game"] == 1.0
    assert gt2.loc["positive", "share_in_mask"] == 0.0 and gt2.loc["positive", "pointing_game"] == 0.0
    assert gt2.convention.to_dict() == {"absolute": "absolute", "positive": "positive"}
    # the figures plot these tables: read back from the drawn bars
    loc = A.localisation_figure(gt2.reset_index(), tmp_path / "loc.png", 60)
    for col, name in (("share_in_mask", "relevance mass accuracy"), ("rank_accuracy", "relevance rank accuracy"),
                      ("pointing_game", "pointing game")):
        bars = loc[(loc.artist == "bar") & (loc.label == name)].set_index("category")
        assert bars.y.to_dict() == pytest.approx(gt2[col].to_dict())
        assert bars.err.to_dict() == pytest.approx(gt2[f"{col}_sd"].fillna(0).to_dict(), abs=1e-9)
    summary = pd.read_csv(methods["good"]["summary"], sep="\t")
    shown = A.regions_figure(methods["good"]["summary"], 2, "t", tmp_path / "f.png", 60)
    for i, m in enumerate(A.METRICS):
        top = summary.sort_values(f"rank_{m}").head(2)
        col = "gain" if m == "gain" else f"{m}_patients"
        bars = shown[(shown.panel == i) & (shown.artist == "bar") & (shown.label != "controls")].set_index("category")
        assert bars.x.to_dict() == pytest.approx(dict(zip(top.region, top[col])))  # horizontal bars: x is the value
    rob = pd.read_csv(tmp_path / "rob.tsv", sep="\t")
    shown = A.robustness_figure(tmp_path / "rob.tsv", "t", tmp_path / "f.png", 60)
    for m in A.METRICS:
        bars = shown[(shown.panel == 0) & (shown.label == m)].set_index("category")
        assert bars.y.to_dict() == pytest.approx(dict(zip(rob.method, rob[f"overlap_{m}_mean"])))


def test_robustness_l2_for_true_positives_and_true_negatives(tmp_path):
    """Study 3 compares runs "for true positive and true negative predictions": the TP maps agree across
    runs (up to scale), the TN maps do not."""
    rng = np.random.default_rng(1)
    tp = rng.random(SHAPE)
    maps, rows = [], []
    for k, split in enumerate(("01", "02", "03")):
        for group, m in (("AD", tp + 0.1 * rng.random(SHAPE)), ("TP", tp * (k + 1)), ("TN", rng.random(SHAPE))):
            rows.append(dict(split=split, run="01", group=group, volume=len(maps), n_scans=2))
            maps.append(m)
    nib.save(nib.Nifti1Image(np.stack(maps, -1).astype(np.float32), AFFINE), tmp_path / "runs.nii.gz")
    pd.DataFrame(rows).to_csv(tmp_path / "runs.tsv", sep="\t", index=False)
    regions = pd.DataFrame([dict(split=s, run="01", region=r, **{f"rank_{m}": i + 1 for m in A.METRICS})
                            for s in ("01", "02", "03") for i, r in enumerate("AB")])
    regions.to_csv(tmp_path / "regions.tsv", sep="\t", index=False)
    summary = A.run_robustness({"m": dict(runs=tmp_path / "runs.nii.gz", runs_tsv=tmp_path / "runs.tsv",
                                          regions=tmp_path / "regions.tsv")}, 1, tmp_path / "p.tsv", tmp_path / "s.tsv")
    row = summary.iloc[0]
    assert row.pairs == 3 and row.l2_tp_mean == pytest.approx(0, abs=1e-4)
    a, b = maps[2] / maps[2].max(), maps[5] / maps[5].max()
    pairs = pd.read_csv(tmp_path / "p.tsv", sep="\t", dtype=str)
    first = pairs[(pairs.split_a == "01") & (pairs.split_b == "02")].iloc[0]
    assert float(first.l2_tn) == pytest.approx(np.linalg.norm(a - b), rel=1e-4)
    assert row.l2_tn_mean > 10 * max(row.l2_tp_mean, 1e-3)
    # the summary's columns in study 3's order: overlaps of sum, density, gain, then L2 for TP and TN
    cols = [c for c in summary.columns if c.endswith("_mean")]
    assert cols[:5] == ["overlap_sum_mean", "overlap_density_mean", "overlap_gain_mean", "l2_tp_mean", "l2_tn_mean"]


def test_localisation_scores_on_constructed_maps():
    mask = np.zeros(100, bool)
    mask[:10] = True
    # all relevance in the mask: every score 1
    r = np.where(mask, 1.0, 0.0) + np.linspace(0, 0.01, 100) * mask
    assert A.localisation_scores(r, mask) == {"mass": 1.0, "rank": 1.0, "pointing": 1.0}
    # the maximum outside, half the top-10 inside, a quarter of the positive mass inside
    r = np.zeros(100)
    r[:5] = 1.0            # 5 inside: mass 5
    r[50:55] = 2.0         # 5 outside, higher: mass 10
    r[60] = 5.0            # the maximum, outside
    s = A.localisation_scores(r, mask)
    assert s["mass"] == pytest.approx(5 / 20) and s["pointing"] == 0.0
    assert s["rank"] == pytest.approx(4 / 10)  # top 10: 60, 50-54 (6 outside), then 4 of the 5 tied inside
    # negative relevance counts for rank and pointing (they rank values) but not for mass
    neg = -np.arange(100, 0, -1).astype(float)  # highest (least negative) at the end, outside the mask
    s = A.localisation_scores(neg, mask)
    assert np.isnan(s["mass"]) and s["pointing"] == 0.0 and s["rank"] == 0.0
    s = A.localisation_scores(neg[::-1], mask)
    assert np.isnan(s["mass"]) and s["pointing"] == 1.0 and s["rank"] == 1.0
    # a constant map ranks nothing
    assert np.isnan(A.localisation_scores(np.ones(100), mask)["rank"])


def test_localisation_chance_level_is_what_random_maps_score():
    rng = np.random.default_rng(0)
    mask = np.zeros(4000, bool)
    mask[rng.choice(4000, 600, replace=False)] = True
    scores = pd.DataFrame([A.localisation_scores(rng.random(4000), mask) for _ in range(400)])
    chance = A.chance_level(mask)
    assert chance == pytest.approx(0.15)
    assert scores["mass"].mean() == pytest.approx(chance, abs=0.005)
    assert scores["rank"].mean() == pytest.approx(chance, abs=0.005)
    assert scores["pointing"].mean() == pytest.approx(chance, abs=0.06)


def test_atlas_on_an_axis_aligned_grid_matches_the_general_resampling():
    """The per-axis indexing used for axis-aligned grids gives what the general path gives."""
    from braindl import templates

    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-90.5, -126.0, -72.0]
    shape = (91, 109, 91)
    direct = templates.atlas_on_grid(aff, shape)
    # the same voxels with the first two axes swapped: not diagonal, so the general path
    swapped = aff[:, [1, 0, 2, 3]]
    general = templates.atlas_on_grid(swapped, (109, 91, 91))
    assert direct.max() > 100
    np.testing.assert_array_equal(direct, general.transpose(1, 0, 2))


def test_a_run_without_a_group_is_said_in_the_table_not_a_stop(custom_atlas, tmp_path):
    """A run whose test set lost its only patient (e.g. to QC) is left out of the region tables with a
    note; the other runs are summarised; with no run left, the summary says why instead of failing."""
    settings, labels = custom_atlas
    (tmp_path / "pack.json").write_text(json.dumps(dict(Shape=[1, *SHAPE], Affine=AFFINE.tolist())))
    on_b = np.where(labels == 3, 1.0, 0.0)
    full = dict(split="01", run="01", **_write_run(tmp_path, "full", [on_b, on_b, 0.1 * on_b], ["AD", "AD", "CN"]))
    no_ad = dict(split="02", run="01", **_write_run(tmp_path, "noad", [on_b, on_b], ["CN", "CN"]))
    out = {k: tmp_path / f"{k}.tsv" for k in ("regions", "summary")}
    summary = A.run_regions([full, no_ad], "AD", "CN", settings, tmp_path / "pack.json", out["regions"],
                            out["summary"])
    assert (summary.n_runs == 1).all()
    assert (summary.note == "split 02 run 01: no test scan of ['AD'], no patient/control comparison").all()
    assert set(pd.read_csv(out["regions"], sep="\t", dtype={"split": str}).split) == {"01"}
    summary = A.run_regions([no_ad], "AD", "CN", settings, tmp_path / "pack.json", out["regions"], out["summary"])
    assert summary.n_runs.tolist() == [0] and "no test scan of ['AD']" in summary.note.iloc[0]
