"""The real Snakefile on the tiny cohort: its end-to-end run, what settings, edits and new data rerun, and
inputs refused before any work (its plans without a run: test_workflow_plans.py)."""

import json
import os
import re
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from sklearn.metrics import balanced_accuracy_score

from braindl import atlas, synthetic
from snakemake_runs import dry_run_changed, dry_runs_changed, job_counts, smk

# every test here runs the real Snakefile (dry runs of seconds, and a tiny end-to-end run of minutes)
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
# the smallest cohort the whole chain runs on: 4 CN + 4 AD, one session, 2 splits of 2 epochs
TINY = {
    "synthetic": {"groups": {"CN": 4, "MCI": 0, "AD": 4, "DLB": 0, "FTLD": 0}, "sessions": [1, 1]},
    "splits": {"n_splits": 2, "test_fraction": 0.25, "validation_fraction": 0.34},
    "training": {"max_epochs": 2, "batch_size": 4},
    "evaluation": {"bootstrap": 50},
    # 000's comparison on the tiny cohort: the 3D CNN and a 2D ResNet-18 on mosaics, CN vs AD
    "transfer": {"tasks": ["CN_vs_AD"], "roc_task": "CN_vs_AD", "embedding_task": "CN_vs_AD",
                 "models": {"cnn3d": {"batch_size": 4}, "resnet18": {"max_epochs": 2, "batch_size": 4},
                            # 003's transfer arm: pretrained weights from a file (the fixture writes it in the
                            # upstream layout), frozen backbone, sigmoid head with class-weighted BCE
                            "r18tl": {"model": "resnet18", "input": "mosaic", "layout": "pet_000",
                                      "weights": "resnet18-upstream.pth", "freeze": "head_only", "head": "sigmoid",
                                      "max_epochs": 2, "batch_size": 4}}},
    # coarser affine (no half-resolution level), SyN and N4 than the defaults: the plumbing is tested here,
    # accuracy in test_registration.py
    "registration": {"affine_iterations": [100, 50, 0, 0], "syn_iterations": [10, 0, 0]},
    "skullstrip": {"n4": {"enabled": True, "shrink_factor": 6, "iterations": [20], "tolerance": 1.0e-3,
                          "spline_distance_mm": 200}},
    # 001's sweep: the 3D CNN pre-trained on CN vs AD with half the training participants (or all), then
    # fine-tuned for MMSE regression (its classification head replaced), against no pre-training
    "pretraining": {"model": "cnn3d", "source_task": "CN_vs_AD", "target_task": "MMSE", "fractions": [0.5, 1.0]},
    # heatmaps of the SyN runs of the 3D CNN (T1w) and of the 2D ResNet-18 (PET mosaics, mapped back to the
    # volume; LRP does not apply to it), with coarse occlusion
    "heatmaps": {"variants": ["syn"], "methods": ["lrp_epsilon", "gradient_x_input", "occlusion"],
                 "transfer_models": ["resnet18"], "occlusion_patch": [32, 38, 32], "occlusion_stride": [32, 38, 32],
                 "occlusion_patch_2d": [57, 79], "occlusion_stride_2d": [57, 79]},
    # 002's dose branch on 5 patients, coarse: 2e7 events, 4 mm voxels, two levels (one per group), small
    # patches; ResNet-18 regressors for both freezing regimes, 1 and 2 training patients, an ensemble of 2
    # external validation runs in test_studies_workflow.py (its cohort is T1w and linear only: cheaper)
    "external": {"tasks": []},
    "dose": {"patients": 5, "total_counts": 2.0e7, "levels": [1, 100], "voxel_size_mm": 4.0,
             "groups": {"low": [1], "high": [100]}, "angles": 24, "subsets": 4,
             "patch_size": 24, "patches_per_plane": 6, "candidates_per_plane": 60,
             "training": {"sizes": [1, 2], "folds": 1, "validation_patients": 1, "test_patients": 2,
                          "ensemble_runs": 2, "max_epochs": 2}},
}
# jobs of the dose branch on the tiny cohort: 5 scans (each one job for its counts and its 2 levels'
# reconstructions, one for their patches); one regression job per regime (of 2 sizes x 2 runs:
# resources.training_job_runs unit)
DOSE_JOBS = {"dose_reconstruct": 5, "dose_patches": 5, "dose_scores": 1, "dose_train": 2,
             "dose_table": 1, "dose_figure": 2, "dose_figure_levels": 1}
# a training job trains every run of its unit (resources.training_job_runs: unit): on the tiny cohort, both
# splits of a task, modality, variant and model
# jobs of the transfer experiment on the tiny cohort (its PET pack, mosaics, 3 models, table, figures)
XF = {"pack": 1, "mosaic": 1, "train_model": 3, "transfer_table": 1, "transfer_metrics": 1, "transfer_roc": 1,
      "transfer_embedding": 3}
# jobs of the pre-training sweep downstream of the PET pack (pre-training on half; fine-tuning from 2 sizes
# and none) (the pre-training on all of a split's participants is the transfer experiment's CN vs AD run:
# reused)
SW = {"pretrain": 1, "finetune": 3, "sweep_table": 1, "sweep_figure": 1}


def add(*counts):
    out = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out


# heatmap jobs per unit: per method one heatmap job for all of its runs, one for its summaries (group maps
# and region tables) and one for its three figures; per unit robustness (table and figure) and ground truth
HMFIG = {"heatmap_figures": 1}


def _heat_unit(n_methods):
    per_method = {"heatmap": 1, "heatmap_summary": 1, **HMFIG}
    return add(*[per_method] * n_methods, {"heatmap_robustness": 1, "heatmap_figure_robustness": 1,
                                           "heatmap_groundtruth": 1})


HM3D, HM2D = _heat_unit(3), _heat_unit(2)  # the 3D CNN: 3 methods; ResNet-18: LRP left out
HM = add(HM3D, HM2D)


@pytest.fixture(scope="module")
def tiny_run(repo, tmp_path_factory):
    wd = tmp_path_factory.mktemp("tiny")
    (wd / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    import torch

    from braindl import backbones

    torch.save(backbones.build_2d("resnet18", 2).features[1].state_dict(), wd / "resnet18-upstream.pth")
    # --verbose: Snakemake's log then holds a line per pass of its scheduler loop
    smk(repo, wd, "--cores", "2", "--configfile", "tiny.yaml", "--verbose", "all")
    return wd


def test_tiny_end_to_end(tiny_run):
    manifest = pd.read_csv(tiny_run / "results/inputs/manifest.tsv", sep="\t", dtype=str)
    settings = yaml.safe_load((REPO / "config.yaml").read_text())["synthetic"]
    table = synthetic.cohort_table({**settings, **TINY["synthetic"]})
    assert len(manifest) == 2 * table["n_sessions"].sum()
    assert set(manifest["modality"]) == {"T1w", "pet"}
    assert set(manifest["diagnosis"]) == {"CN", "AD"}
    assert all(Path(tiny_run / p).is_file() for p in manifest["path"])
    assert (tiny_run / f"results/synthetic/groundtruth/tpl-{synthetic.SPACE}_dx-AD_desc-atrophy_mask.nii.gz").is_file()


def test_the_scheduler_wakes_per_job_and_per_second_not_per_job_per_second(tiny_run):
    """braindl.scheduler, applied by the Snakefile: a pass of Snakemake's loop per job start and end and one
    per second at most; Snakemake 9.27 alone made about 20,000 passes for this run when it had 194 jobs (310 s
    under cProfile; 139 since the merged jobs of 2026-12-05, 613 passes)."""
    log = sorted((tiny_run / ".snakemake/log").glob("*.snakemake.log"))[0].read_text()
    jobs = int(re.search(r"(\d+) of \1 steps \(100%\) done", log).group(1))
    stamps = [datetime.strptime(m, "%a %b %d %H:%M:%S %Y") for m in re.findall(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$", log, re.M)]
    seconds = (stamps[-1] - stamps[0]).total_seconds()
    passes = log.count("Resources before job selection")
    assert jobs > 100 and seconds > 60
    assert passes <= 3 * jobs + seconds, (passes, jobs, seconds)


def test_second_run_executes_nothing(repo, tiny_run):
    out = smk(repo, tiny_run, "-n", "--configfile", "tiny.yaml", "all")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changed_setting_reruns_generation_only_where_needed(repo, tiny_run):
    over = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    over["synthetic"]["pet_noise"] = 0.05
    (tiny_run / "changed.yaml").write_text(yaml.safe_dump(over))
    out = smk(repo, tiny_run, "-n", "--configfile", "changed.yaml", "all")
    counts = job_counts(out.stdout + out.stderr)
    assert counts.get("synthetic_cohort") == 1 and counts.get("check_inputs") == 1
    # a setting of a later stage leaves the cohort alone
    over = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    over["dataset"] = {"diagnoses": ["CN", "MCI", "AD", "DLB", "FTLD", "PD"]}
    (tiny_run / "dx.yaml").write_text(yaml.safe_dump(over))
    out = smk(repo, tiny_run, "-n", "--configfile", "dx.yaml", "all")
    counts = job_counts(out.stdout + out.stderr)
    assert set(counts) == {"check_inputs", "all"}


def _n_sessions(tiny_run):
    return len(pd.read_csv(tiny_run / "results/inputs/manifest.tsv", sep="\t").drop_duplicates(
        ["participant_id", "session_id"]))


def test_tiny_preprocessing_outputs(tiny_run, default_config):
    variants = default_config["registration"]["variants"]
    n = _n_sessions(tiny_run)
    boxes = default_config["crop"]["box"]
    scans = pd.read_csv(tiny_run / "results/qc/scans_qc.tsv", sep="\t")
    assert len(scans) == 2 * n and scans["qc_pass"].all(), scans
    # one native mask per scan, from the extraction stage, with its volume
    for side in tiny_run.glob("results/extraction/sub-*/ses-*/*/*_desc-brain_mask.json"):
        meta = json.loads(side.read_text())
        assert 900 < meta["BrainVolumeML"] < 2600 and meta["Method"] in ("deepbet", "via_t1")
    assert len(list(tiny_run.glob("results/extraction/sub-*/ses-*/anat/*_desc-preproc_T1w.nii.gz"))) == n
    for v in variants:
        table = pd.read_csv(tiny_run / f"results/qc/desc-{v}_qc.tsv", sep="\t")
        assert len(table) == 2 * n and set(table["modality"]) == {"T1w", "pet"}
        assert table["qc_pass"].all(), table
        # the native volume is the scan's, whatever the variant
        assert np.allclose(table.sort_values(["participant_id", "modality"]).brain_volume_ml.to_numpy(),
                           scans.sort_values(["participant_id", "modality"]).merge(table, on=[
                               "participant_id", "session_id", "modality"]).brain_volume_ml.to_numpy())
        for mod, folder in (("T1w", "anat"), ("pet", "pet")):
            files = sorted(tiny_run.glob(f"results/crop/sub-*/ses-*/{folder}/*_desc-{v}_{mod}.nii.gz"))
            assert len(files) == n
            shape = tuple(boxes[default_config["crop"]["preset"][mod]]["shape"])
            img = nib.load(str(files[0]))
            assert img.shape == shape
            data = img.get_fdata()
            assert data.min() == 0.0 and abs(data.max() - 1.0) < 1e-6  # min-max within the brain
            assert len(list(tiny_run.glob(f"results/qc/sub-*/ses-*/*_desc-{v}_{mod}_qc.png"))) == n


def test_tiny_training_and_evaluation_outputs(tiny_run, default_config):
    variants = default_config["registration"]["variants"]
    metrics = pd.read_csv(tiny_run / "results/evaluation/task-CN_vs_AD/task-CN_vs_AD_T1w_metrics.tsv", sep="\t")
    assert len(metrics) == len(variants) * TINY["splits"]["n_splits"]
    assert set(metrics["variant"]) == set(variants)
    assert (metrics["epochs"] == 2).all()
    for row in metrics.itertuples():  # each run's balanced accuracy is scikit-learn's on its test predictions
        pred = pd.read_csv(tiny_run / "results/training/task-CN_vs_AD/T1w" / f"desc-{row.variant}" /
                           f"task-CN_vs_AD_desc-{row.variant}_split-{row.split:02d}_run-{row.run:02d}_predictions.tsv",
                           sep="\t").query("set == 'test'")
        assert row.balanced_accuracy == pytest.approx(balanced_accuracy_score(pred.truth, pred.predicted))
        assert row.n_test == len(pred)
    assert {"balanced_accuracy_lo", "balanced_accuracy_hi", "roc_auc", "g_mean", "nmi"} <= set(metrics.columns)
    comparison = pd.read_csv(tiny_run / "results/evaluation/task-CN_vs_AD/task-CN_vs_AD_T1w_variants.tsv", sep="\t")
    assert len(comparison.drop_duplicates(["variant_a", "variant_b"])) == 3
    # pairs on per-split means, with the corrected resampled t-test beside the Wilcoxon test
    assert {"corrected_t", "corrected_t_p_value", "p_value"} <= set(comparison.columns)
    tested = comparison.dropna(subset=["corrected_t"])  # two-sided, n_splits - 1 degrees of freedom
    assert len(tested) and tested.corrected_t_p_value.to_numpy() == pytest.approx(
        2 * stats.t.sf(np.abs(tested.corrected_t), tested.n_splits - 1))
    per_split = metrics.groupby(["variant", "split"]).balanced_accuracy.mean().unstack("split")
    for row in comparison[comparison.metric == "balanced_accuracy"].itertuples():
        assert row.mean_difference == pytest.approx((per_split.loc[row.variant_a] - per_split.loc[row.variant_b]).mean())
    for split in ("01", "02"):
        table = pd.read_csv(tiny_run / f"results/splits/task-CN_vs_AD/task-CN_vs_AD_split-{split}_split.tsv", sep="\t")
        assert table.groupby("participant_id")["set"].nunique().max() == 1
    for kind in ("variants", "roc", "splits"):
        assert (tiny_run / f"results/figures/task-CN_vs_AD_T1w_{kind}.png").stat().st_size > 5000
    # the test scans are the same in every variant (exclusions are per scan) and hold both classes
    for split in ("01", "02"):
        tests = {}
        for v in variants:
            pred = pd.read_csv(tiny_run / f"results/training/task-CN_vs_AD/T1w/desc-{v}/"
                               f"task-CN_vs_AD_desc-{v}_split-{split}_run-01_predictions.tsv", sep="\t", dtype=str)
            test = pred[pred["set"] == "test"]
            assert set(test["truth"]) == {"CN", "AD"}, (v, split)
            tests[v] = sorted(zip(test.participant_id, test.session_id))
        assert all(t == tests[variants[0]] for t in tests.values()), tests
    # one job trained both splits of the syn runs, one after the other, and logged both
    log = (tiny_run / "results/training/logs/task-CN_vs_AD_T1w_desc-syn.log").read_text()
    assert log.count("epoch   1/2") == log.count("epoch   2/2") == 2
    assert log.index("CN_vs_AD split 1 run 1") < log.index("CN_vs_AD split 2 run 1")
    assert not list(tiny_run.glob("results/training/**/*_state"))


def _rerun(repo, tiny_run, name, change):
    return dry_run_changed(repo, tiny_run, "tiny.yaml", name, change)


def _assert_reruns(repo, tiny_run, expected):
    """``{name: (change, jobs)}``: a dry run of ``all`` with each change of tiny.yaml (two at a time) plans
    exactly ``jobs``."""
    got = dry_runs_changed(repo, tiny_run, "tiny.yaml", {name: change for name, (change, _) in expected.items()})
    for name, (change, jobs) in expected.items():
        assert got[name] == jobs, (name, change)


FIGS = {"figure_variants": 1, "figure_roc": 1, "figure_splits": 1}


def _below_crop(variants):
    """Jobs downstream of the crops of ``variants`` variants (tiny config: 2 splits x 1 run); every crop
    job also writes the PET the transfer experiment reads, so its jobs follow."""
    return add({"pack": variants, "train": variants, "evaluate": 1, **FIGS, "all": 1}, XF, SW, HM)


def _below_qc(nv):
    """Jobs downstream of the QC table: the splits are drawn from the scans that pass it (2 tasks, the
    sweep's splits), and so every pack and run of every variant follows."""
    return add({"qc_table": 1, "splits": 2, "sweep_split": 2}, _below_crop(nv))


def test_stage_settings_rerun_that_stage_and_below(repo, tiny_run, default_config):
    n = _n_sessions(tiny_run)
    nv = len(default_config["registration"]["variants"])
    out = smk(repo, tiny_run, "-n", "--configfile", "tiny.yaml", "all")
    assert "Nothing to be done" in out.stdout + out.stderr
    box = {**default_config["crop"]["box"], "mri_2mm": {"shape": [90, 108, 90], "resolution_mm": 2.0}}
    # a preset the workflow's modalities do not use reruns nothing
    unused = {**default_config["crop"]["box"], "spect_001": {"shape": [95, 95, 50], "resolution_mm": 2.0}}
    n4 = {**TINY["skullstrip"]["n4"], "iterations": [10]}
    # an N4 or extraction setting: extraction, every variant's registration and everything after
    after_extraction = add({"extract": n, "strip_crop": nv * n},
                           {f"register_{v}": n for v in default_config["registration"]["variants"]}, _below_qc(nv))
    _assert_reruns(repo, tiny_run, {
        # a crop setting: each session and variant's strip-and-crop job (one job: the stripping again, to the
        # same images), whose QC rows rerun the QC table and the splits (to the same tables), and every run
        "box": ({"crop": {"box": box}}, {"strip_crop": nv * n, **_below_qc(nv)}),
        "norm": ({"crop": {"normalisation": "zscore"}}, {"strip_crop": nv * n, **_below_qc(nv)}),
        "unused": ({"crop": {"box": unused}}, {}),
        "qc": ({"qc": {"outlier_z": 3.0}}, _below_qc(nv)),
        # the mosaic layout or size: mosaics and the 2D model's runs, not the 3D CNN's
        "scale": ({"mosaic": {"scale": 0.4}}, add({
            "mosaic": 1, "train_model": 2, "transfer_table": 1, "transfer_metrics": 1, "transfer_roc": 1,
            "transfer_embedding": 2, "all": 1}, HM2D)),
        "n4": ({"skullstrip": {"n4": n4}}, after_extraction),
        "thr": ({"skullstrip": {"deepbet_threshold": 0.6}}, after_extraction),
        # the PET-only route's threshold is not used on the via_t1 route: nothing reruns
        "strip": ({"skullstrip": {"pet_tissue_threshold": 0.4}}, {}),
        # SyN settings: syn's registration, strip and crop; the QC table and, from the splits on, every variant
        "syn": ({"registration": {"syn_iterations": [5, 0, 0]}},
                add({"register_syn": n, "strip_crop": n}, _below_qc(nv))),
    })


def test_learning_settings_rerun_only_what_they_feed(repo, tiny_run, default_config):
    nv = len(default_config["registration"]["variants"])
    train = {"train": nv, "evaluate": 1, **FIGS, "all": 1}
    models = {"train_model": 3, "transfer_table": 1, "transfer_metrics": 1, "transfer_roc": 1}
    arms = {**TINY["transfer"]["models"], "resnet18": {**TINY["transfer"]["models"]["resnet18"], "head": "linear"}}
    _assert_reruns(repo, tiny_run, {
        # the learning rate feeds every run whose model does not set its own (the 3D CNN of 000 does)
        "lr": ({"training": {"learning_rate": 3e-4}},
               add(train, models, {"train_model": -1, "transfer_embedding": 2}, HM)),
        "seed": ({"splits": {"seed": 3}},
                 add({"splits": 2, "sweep_split": 2}, train, models, {"transfer_embedding": 3}, SW, HM)),
        # more runs per split: the splits stay; the training job of each unit (resources.training_job_runs:
        # unit) and the heatmap job of each unit and method (heatmaps.job_runs: unit) hold all runs, so they
        # train and map the old runs again with the new (and the embeddings of the first runs are drawn
        # again); every summary over the runs is redone
        "runs": ({"splits": {"n_repeats": 2}}, add(train, models, {"transfer_embedding": 3}, SW, HM)),
        "boot": ({"evaluation": {"bootstrap": 60}}, {"evaluate": 1, **FIGS, "transfer_table": 1, "all": 1}),
        "dpi": ({"figures": {"dpi": 90}}, add({
            **FIGS, "transfer_metrics": 1, "transfer_roc": 1, "transfer_embedding": 3, "sweep_figure": 1, "all": 1},
            *[HMFIG] * 5, {"heatmap_figure_robustness": 2, "dose_figure": 2, "dose_figure_levels": 1},
            {"heatmap_groundtruth": 2})),  # its job draws the localisation figure beside the table
        # the sweep's fractions: only the new size's split, pre-training and fine-tuning, and the summary
        "sizes": ({"pretraining": {**TINY["pretraining"], "fractions": [0.5, 1.0, 0.75]}}, {
            "sweep_split": 2, "pretrain": 1, "finetune": 1, "sweep_table": 1, "sweep_figure": 1, "all": 1}),
        # one model's setting reruns that model's runs only
        "head": ({"transfer": {"models": arms}}, add({
            "train_model": 1, "transfer_table": 1, "transfer_metrics": 1, "transfer_roc": 1, "transfer_embedding": 1,
            "all": 1}, HM2D)),
        # the task and modality lists are not settings of the runs that exist
        "tasks": ({"training": {"tasks": ["CN_vs_AD", "CN_AD_DLB"]}},
                  {"splits": 1, "train": nv, "evaluate": 1, **FIGS, "all": 1}),
    })


def test_one_figure_target_lists_only_its_path(repo, tiny_run):
    fig = "results/figures/task-CN_vs_AD_T1w_roc.png"
    out = smk(repo, tiny_run, fig, "-n", "--configfile", "tiny.yaml")
    assert "Nothing to be done" in out.stdout + out.stderr
    # forcing the figure rebuilds that figure only, not its runs or the other figures
    out = smk(repo, tiny_run, fig, "-n", "--configfile", "tiny.yaml", "--forcerun", "figure_roc")
    assert job_counts(out.stdout + out.stderr) == {"figure_roc": 1}


@pytest.mark.parametrize("deleted, path", [
    ("results/evaluation/task-CN_vs_AD/task-CN_vs_AD_T1w_metrics.tsv", {"evaluate": 1, "figure_roc": 1}),
    ("results/training/task-CN_vs_AD/T1w/desc-linear/task-CN_vs_AD_desc-linear_split-02_run-01_predictions.tsv",
     {"train": 1, "evaluate": 1, "figure_roc": 1}),
])
def test_deleted_intermediate_reruns_exactly_its_path_to_the_figure(repo, tiny_run, deleted, path):
    """Snakemake keeps an up-to-date figure whose intermediate was deleted (snakemake#1978); --summary
    names the missing file and --forcerun on it lists exactly the jobs from there to the figure."""
    fig = "results/figures/task-CN_vs_AD_T1w_roc.png"
    f = tiny_run / deleted
    data, st = f.read_bytes(), f.stat()
    f.unlink()
    try:
        out = smk(repo, tiny_run, fig, "-n", "--configfile", "tiny.yaml")
        assert "Nothing to be done" in out.stdout + out.stderr
        summary = smk(repo, tiny_run, fig, "--configfile", "tiny.yaml", "--summary").stdout
        missing = [row.split("\t")[0] for row in summary.splitlines() if "\tmissing\t" in row]
        assert missing == [deleted]
        out = smk(repo, tiny_run, fig, "-n", "--configfile", "tiny.yaml", f"--forcerun={deleted}")
        assert job_counts(out.stdout + out.stderr) == path
    finally:
        f.write_bytes(data)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))

def test_library_change_reruns_its_stage_only(repo, tiny_run, tmp_path):
    """Snakemake does not see modules a script imports; the code hash param makes it."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for item in ("Snakefile", "config.yaml", "rules", "workflow_scripts", "braindl", "envs"):
        src = repo / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, copy / item, **(
            {"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
    # a comment and a docstring change no code: nothing reruns
    crop_py = copy / "braindl" / "crop.py"
    crop_py.write_text(crop_py.read_text().replace('"""', '"""Edited. ', 1) + "\n# a comment\n")
    # the copy's package, not the installed one, must be imported (by the Snakefile and the hash)
    env = {**os.environ, "PYTHONPATH": str(copy)}
    out = smk(copy, tiny_run, "-n", "--configfile", "tiny.yaml", "all", env=env)
    assert job_counts(out.stdout + out.stderr) == {}, out.stdout
    with open(crop_py, "a") as fh:
        fh.write("\n_A_CHANGE_TO_THE_CROPPING_CODE = 1\n")
    out = smk(copy, tiny_run, "-n", "--configfile", "tiny.yaml", "all", env=env)
    counts = job_counts(out.stdout + out.stderr)
    # the strip-and-crop jobs, their QC rows' table and the splits, and every run (the heatmap summaries
    # import braindl.crop too)
    assert set(counts) == {"strip_crop", *_below_qc(1)}, counts


def test_heatmap_settings_rerun_only_what_they_feed(repo, tiny_run):
    hm = TINY["heatmaps"]
    # the atlas: each method's summaries (group maps and region tables, one job) and everything after them,
    # not the heatmaps
    after_regions = {"heatmap_summary": 5, "heatmap_figures": 5, "heatmap_robustness": 2,
                     "heatmap_figure_robustness": 2, "heatmap_groundtruth": 2, "all": 1}
    _assert_reruns(repo, tiny_run, {
        # one method's parameter: that method's heatmaps of the 3D CNN and what summarises them
        "eps": ({"heatmaps": {**hm, "lrp_epsilon": 0.01}}, add(_heat_unit(1), {"all": 1})),
        # occlusion patch of volumes: the 3D CNN's occlusion only; of mosaics: the 2D model's
        "patch": ({"heatmaps": {**hm, "occlusion_stride": [16, 19, 16]}}, add(_heat_unit(1), {"all": 1})),
        "patch2d": ({"heatmaps": {**hm, "occlusion_stride_2d": [19, 27]}}, add(_heat_unit(1), {"all": 1})),
        # a new method: its jobs only, and the summaries over methods
        "gcam": ({"heatmaps": {**hm, "methods": [*hm["methods"], "gradcam"]}},
                 add(_heat_unit(1), _heat_unit(1), {"all": 1})),
        # 000's per-slice occlusion applies to both models; its settings change nothing while it is not chosen
        "oslice": ({"heatmaps": {**hm, "methods": [*hm["methods"], "occlusion_slice"]}},
                   add(_heat_unit(1), _heat_unit(1), {"all": 1})),
        "oslice2": ({"heatmaps": {**hm, "occlusion_slice_stride": 3}}, {}),
        "merge": ({"atlas": {"merge_hemispheres": False}}, after_regions),
        # the group shown and the regions drawn: the figures only
        "group": ({"heatmaps": {**hm, "display_group": "TP"}}, {"heatmap_figures": 5, "all": 1}),
        "top": ({"atlas": {"top_regions": 10}}, {"heatmap_figures": 5, "all": 1}),
        # batch sizes change no map: nothing reruns
        "batch": ({"heatmaps": {**hm, "batch_size": 2, "occlusion_batch": 4}}, {}),
    })


def test_design_settings_rerun_matrix(repo, tiny_run, default_config):
    kept = [v for v in default_config["registration"]["variants"] if v != "none"]
    n = 3
    heat = add(_heat_unit(3), _heat_unit(2))
    _assert_reruns(repo, tiny_run, {
        # dropping a registration variant: exclusions are decided over the variants compared, so QC, and from
        # the splits on the runs of the variants kept, are redone
        "variants": ({"registration": {"variants": kept}}, _below_qc(len(kept))),
        # one more split: new partitions, so everything from the splits on (3 variants of the 3D CNN,
        # 3 models of the transfer experiment, 2 sizes + none of the sweep, each one job for its 3 splits;
        # 5 heatmap methods)
        "nsplits": ({"splits": {**TINY["splits"], "n_splits": n}}, add(
            {"splits": 2, "train": 3, "evaluate": 1, **FIGS, "train_model": 3, "transfer_table": 1,
             "transfer_metrics": 1, "transfer_roc": 1, "transfer_embedding": 3, "sweep_split": n, "pretrain": 1,
             "finetune": 3, "sweep_table": 1, "sweep_figure": 1, "all": 1}, heat)),
        # another bundled atlas: the summaries and what follows, the region tables under the new atlas' names
        "atlasname": ({"atlas": {"name": "AAL"}}, {
            "heatmap_summary": 5, "heatmap_figures": 5, "heatmap_robustness": 2,
            "heatmap_figure_robustness": 2, "heatmap_groundtruth": 2, "all": 1}),
    })


def test_tiny_heatmap_outputs(tiny_run, default_config):
    base = tiny_run / "results/heatmaps/task-CN_vs_AD"
    crop = nib.load(str(next(tiny_run.glob("results/crop/sub-*/ses-*/anat/*_desc-syn_T1w.nii.gz"))))
    split = pd.read_csv(tiny_run / "results/splits/task-CN_vs_AD/task-CN_vs_AD_split-01_split.tsv", sep="\t")
    n_test = int((split["set"] == "test").sum())
    for method in ("lrpepsilon", "gradientxinput", "occlusion"):
        pre = base / f"T1w/desc-syn/model-cnn3d_thesis/task-CN_vs_AD_T1w_desc-syn_model-cnn3d_thesis"
        img = nib.load(str(pre) + f"_split-01_run-01_method-{method}_heatmaps.nii.gz")
        assert img.shape == (*crop.shape, n_test)  # template space: the crop grid and affine
        np.testing.assert_allclose(img.affine, crop.affine, atol=1e-4)
        assert np.isfinite(np.asarray(img.dataobj)).all() and np.abs(np.asarray(img.dataobj)).max() > 0
        info = json.loads(Path(str(pre) + f"_split-01_run-01_method-{method}_heatmaps.json").read_text())
        assert info["TargetClass"] == "AD" and info["Space"] == "MNI152NLin2009aSym"
        regions = pd.read_csv(str(pre) + f"_method-{method}_atlas-AAL3_regionsummary.tsv", sep="\t")
        assert "Hippocampus" in set(regions.region) and (regions.n_runs == 2).all()
        # 004's conventions: absolute values for the signed methods; gain of true positives, all patients kept
        assert set(regions.convention) == {"positive" if method == "lrpepsilon" else "absolute"}
        assert {"gain", "gain_all", "sum", "density"} <= set(regions.columns)
        for kind in ("display", "statmap", "regions"):
            fig = tiny_run / f"results/figures/heatmaps_task-CN_vs_AD_T1w_desc-syn_model-cnn3d_thesis_method-{method}_{kind}.png"
            assert fig.stat().st_size > 5000
    # one job computed each unit's runs one after another: every map's sidecar names its own run's model
    sidecars = sorted((tiny_run / "results/heatmaps").rglob("*_heatmaps.json"))
    assert len(sidecars) == 5 * 2  # 3 + 2 methods (the 3D CNN, the ResNet-18) x 2 splits
    for path in sidecars:
        run = re.search(r"_(split-\d+_run-\d+)_method-", path.name).group(1)
        assert f"_{run}_model.pt" in json.loads(path.read_text())["Model"], path.name
    truth = pd.read_csv(str(pre) + "_atlas-AAL3_groundtruth.tsv", sep="\t")
    assert truth.method.tolist() == ["lrpepsilon", "gradientxinput", "occlusion"]
    # relevance mass accuracy and the pointing game, read back from the maps of the AD test scans inside the
    # atlas' labelled voxels (LRP: its positive relevance; gradient x input and occlusion: by absolute value)
    meta = json.loads((tiny_run / "results/pack/desc-syn_T1w_volumes.json").read_text())
    affine, shape = np.asarray(meta["Affine"]), tuple(meta["Shape"][1:])
    mask_nii = next((tiny_run / "results/synthetic/groundtruth").glob("*_dx-AD_desc-atrophy_mask.nii.gz"))
    mask = atlas.truth_mask_on_grid(mask_nii, affine, shape)
    brain = atlas.load_atlas(default_config["atlas"], affine, shape)[0] > 0
    assert truth.chance_share.to_numpy() == pytest.approx(mask[brain].mean())
    for row in truth.itertuples():
        mass, point = [], []
        for split in ("01", "02"):
            maps = np.asarray(nib.load(str(pre) + f"_split-{split}_run-01_method-{row.method}_heatmaps.nii.gz").dataobj)
            index = pd.read_csv(str(pre) + f"_split-{split}_run-01_method-{row.method}_heatmaps.tsv", sep="\t")
            for v in np.flatnonzero(index.truth.to_numpy() == "AD"):
                r = maps[..., v][brain].astype(np.float64)
                r = r if row.convention == "positive" else np.abs(r)
                mass.append(np.clip(r, 0, None)[mask[brain]].sum() / np.clip(r, 0, None).sum())
                point.append(float(mask[brain][np.argmax(r)]))
        assert row.n_scans == len(mass) > 0
        assert row.share_in_mask == pytest.approx(np.mean(mass)) and row.pointing_game == pytest.approx(np.mean(point))
    assert (truth.chance_rank == truth.chance_share).all() and (truth.chance_pointing == truth.chance_share).all()
    fig = tiny_run / "results/figures/heatmaps_task-CN_vs_AD_T1w_desc-syn_model-cnn3d_thesis_localisation.png"
    assert fig.stat().st_size > 5000
    robust = pd.read_csv(str(pre) + "_atlas-AAL3_robustnesssummary.tsv", sep="\t")
    pairs = pd.read_csv(str(pre) + "_atlas-AAL3_robustness.tsv", sep="\t")
    assert set(robust.method) == set(truth.method)
    assert robust.set_index("method").overlap_sum_mean.to_dict() == pytest.approx(
        pairs.groupby("method").overlap_sum.mean().to_dict())
    # study 3's layout: top-k overlaps of sum, density and gain, then L2 of the TP and TN maps
    cols = [c for c in robust.columns if c.endswith("_mean")]
    assert cols[:5] == ["overlap_sum_mean", "overlap_density_mean", "overlap_gain_mean", "l2_tp_mean", "l2_tn_mean"]
    assert (truth.convention == ["positive", "absolute", "absolute"]).all()
    # the 2D model: its PET mosaic heatmaps mapped back onto the PET crop, LRP left out
    pet = nib.load(str(next(tiny_run.glob("results/crop/sub-*/ses-*/pet/*_desc-syn_pet.nii.gz"))))
    two_d = sorted((base / "pet/desc-syn/model-resnet18").glob("*_split-01_run-01_method-*_heatmaps.nii.gz"))
    assert [p.name.split("method-")[1].split("_")[0] for p in two_d] == ["gradientxinput", "occlusion"]
    assert nib.load(str(two_d[0])).shape == (*pet.shape, n_test)


def test_bad_bids_dataset_fails_before_any_work(repo, tiny_run, tmp_path):
    bids = tmp_path / "bids"
    src = tiny_run / "results/synthetic/bids"
    subprocess.run(["cp", "-r", str(src), str(bids)], check=True)
    t1 = sorted(bids.glob("sub-*/ses-01/anat/*_T1w.nii.gz"))[0]
    t1.write_bytes(b"garbage")
    (tmp_path / "real.yaml").write_text(yaml.safe_dump({"dataset": {"bids_dir": str(bids)}}))
    out = smk(repo, tmp_path, "--cores", "1", "--configfile", "real.yaml", "all", check=False)
    assert out.returncode != 0
    log = (tmp_path / "results/inputs/logs/check_inputs.log").read_text()
    assert str(t1) in log and "named .nii.gz but not gzip-compressed" in log
    assert not (tmp_path / "results/inputs/manifest.tsv").exists()


def test_a_new_session_of_a_known_participant_reruns_the_splits(repo, tiny_run, tmp_path):
    """The tiny cohort as a user's BIDS dataset (a copy of the run): a new session of a participant who
    is already in participants.tsv reruns its chain and the splits (it once left them stale), no other
    session's chain."""
    for part in ("results/synthetic/bids", "results/inputs", "results/extraction", "results/registration",
                 "results/skullstrip", "results/qc", "results/crop", "results/splits", ".snakemake/metadata"):
        shutil.copytree(tiny_run / part, tmp_path / part, symlinks=True)
    shutil.copy(tiny_run / "resnet18-upstream.pth", tmp_path)  # the transfer arm's weights the config names
    over = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    over["dataset"] = {"bids_dir": "results/synthetic/bids"}
    (tmp_path / "bids.yaml").write_text(yaml.safe_dump(over))
    split = "results/splits/task-CN_vs_AD/task-CN_vs_AD_split-01_split.tsv"
    smk(repo, tmp_path, split, "--cores", "2", "--configfile", "bids.yaml")
    assert job_counts(smk(repo, tmp_path, split, "-n", "--configfile", "bids.yaml").stdout) == {}
    bids = tmp_path / "results/synthetic/bids"
    sub = sorted(bids.glob("sub-*"))[0]
    for f in (sub / "ses-01").rglob("*.*"):
        new = sub / "ses-02" / f.relative_to(sub / "ses-01").parent / f.name.replace("ses-01", "ses-02")
        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, new)
    table = bids / sub.name / f"{sub.name}_sessions.tsv"
    table.write_text(table.read_text() + table.read_text().splitlines()[1].replace("ses-01", "ses-02") + "\n")
    counts = job_counts(smk(repo, tmp_path, split, "-n", "--configfile", "bids.yaml").stdout)
    assert counts["session_scans"] == 1 and counts["extract"] == 1 and counts["splits"] == 1, counts
    n_variants = len(yaml.safe_load((REPO / "config.yaml").read_text())["registration"]["variants"])
    assert counts["strip_crop"] == n_variants and counts["check_inputs"] == 1, counts


def test_dose_branch_on_a_bids_dataset_needs_its_count_scale(repo, tiny_run, tmp_path):
    """Real PET has no TotalCounts: the branch is off until dose.total_counts (or events, or scores) is set;
    without a scores table it reconstructs but trains no regressor."""
    bids = str(tiny_run / "results/synthetic/bids")
    (tmp_path / "real.yaml").write_text(yaml.safe_dump({"dataset": {"bids_dir": bids}}))
    out = smk(repo, tmp_path, "all", "-n", "--configfile", "real.yaml")
    assert "dose branch is off for this BIDS dataset" in out.stderr and "dose_reconstruct" not in job_counts(out.stdout)
    (tmp_path / "counts.yaml").write_text(yaml.safe_dump({"dataset": {"bids_dir": bids},
                                                          "dose": {"total_counts": 1.0e7, "patients": 4}}))
    out = smk(repo, tmp_path, "all", "-n", "--configfile", "counts.yaml")
    counts = job_counts(out.stdout)
    assert counts["dose_reconstruct"] == 4 and "dose_train" not in counts
    assert "no quality regression" in out.stderr


def test_tiny_transfer_outputs(tiny_run):
    mosaics = __import__("numpy").load(tiny_run / "results/mosaic/desc-syn_pet_layout-pet_000_mosaics.npy", mmap_mode="r")
    assert mosaics.shape[1:] == (1, 285, 395)
    table = pd.read_csv(tiny_run / "results/transfer/pet_desc-syn_comparison.tsv", sep="\t")
    assert set(table["model"]) == {"cnn3d", "resnet18", "r18tl"} and (table["n_runs"] == 2).all()
    tl = table.set_index("model").loc["r18tl"]
    # 003: frozen pretrained backbone, only the sigmoid head (512 x 2 + 2) trains
    assert tl["weights"].endswith("resnet18-upstream.pth") and tl["freeze"] == "head_only"
    assert tl["trainable_parameters"] == 512 * 2 + 2
    assert {"validation_accuracy", "test_accuracy_lo", "test_accuracy_hi", "test_nmi", "train_seconds",
            "trainable_parameters"} <= set(table.columns)
    assert table.set_index("model").loc["resnet18", "input"] == "mosaic"
    assert {"test_precision", "test_sensitivity", "test_f1", "test_g_mean"} <= set(table.columns)
    for fig in ("transfer_task-CN_vs_AD_pet_desc-syn_roc.png", "transfer_task-CN_vs_AD_pet_desc-syn_metrics.png", "transfer_task-CN_vs_AD_pet_desc-syn_model-cnn3d_embedding.png",
                "transfer_task-CN_vs_AD_pet_desc-syn_model-resnet18_embedding.png"):
        assert (tiny_run / "results/figures" / fig).stat().st_size > 3000, fig
    log = (tiny_run / "results/transfer/logs/task-CN_vs_AD_model-resnet18.log").read_text()
    assert log.count("parameters trainable") == 2 and log.count("epoch   2/2") == 2  # both splits' runs
    # 001's sweep pre-trains on all of a split's participants with the transfer experiment's CN vs AD run
    # (the same run: reused, not trained again), and on half of them with its own
    fine = json.loads(next(tiny_run.glob("results/pretraining/model-cnn3d/finetune/*_from-100_split-01_run-01_summary.json"))
                      .read_text())
    assert fine["pretrained"].endswith("results/transfer/task-CN_vs_AD/model-cnn3d/"
                                       "task-CN_vs_AD_pet_desc-syn_model-cnn3d_split-01_run-01_model.pt")
    assert not list(tiny_run.glob("results/pretraining/model-cnn3d/pretrain/*_size-100_*"))
    sweep = pd.read_csv(next(tiny_run.glob("results/pretraining/*_sweep.tsv")), sep="\t", dtype={"source": str})
    split = pd.read_csv(tiny_run / "results/splits/task-CN_vs_AD/task-CN_vs_AD_split-01_split.tsv", sep="\t")
    full = sweep[(sweep.source == "100") & (sweep.split == 1)]
    assert (full.n_pretrain == split[split.set == "train"].participant_id.nunique()).all()


def test_tiny_dose_outputs(tiny_run):
    d = tiny_run / "results/dose"
    counts = sorted(d.glob("sub-*/ses-*/pet/*_desc-counts_sinogram.json"))
    assert len(counts) == 5
    meta = json.loads(counts[0].read_text())
    low, full = meta["CountsPerLevel"]["1"], meta["CountsPerLevel"]["100"]
    assert full == meta["Events"] and abs(full / 2e7 - 1) < 0.01 and abs(low / full - 0.01) < 0.001
    recons = sorted(d.glob("sub-*/ses-*/pet/*_desc-dose*_pet.nii.gz"))
    assert len(recons) == 10
    img = nib.load(str(recons[0]))
    assert np.allclose(np.sqrt((img.affine[:3, :3] ** 2).sum(0)), 4.0) and img.get_fdata().max() == 1.0
    scores = pd.read_csv(d / "quality_scores.tsv", sep="\t", dtype={"session_id": str})
    assert len(scores) == 10 and set(scores["group"]) == {"low", "high"}
    for _, rows in scores.groupby("participant_id"):  # more counts, better (or equal) scores
        r = rows.sort_values("level")
        assert (r["ssim"].diff().dropna() > 0).all() and (r[["gqr", "pr", "dc"]].diff().dropna() >= 0).all().all()
    patches = np.load(next(d.glob("sub-*/ses-*/pet/*_desc-dose1_patches.npy")))
    assert patches.shape == (18, 24, 24) and patches.dtype == np.float16
    table = pd.read_csv(d / "quality_runs.tsv", sep="\t")
    runs = table[table["kind"] == "run"]
    assert len(runs) == 8 and (table["kind"] == "ensemble").sum() == 4
    assert set(runs[runs["freeze"] == "head_only"]["trainable_parameters"]) == {512 * 3 + 3}
    for fig in ("dose_levels", "dose_training_size", "dose_freezing"):
        assert (tiny_run / f"results/figures/{fig}.png").stat().st_size > 3000


def test_dose_settings_rerun_only_what_they_feed(repo, tiny_run):
    dose = TINY["dose"]
    after_recon = {"dose_patches": 5, "dose_scores": 1, "dose_train": 2, "dose_table": 1, "dose_figure": 2,
                   "dose_figure_levels": 1, "all": 1}
    training = dose["training"]
    regimes = {**training, "regimes": ["head_only", "first_60_percent", "none"]}
    _assert_reruns(repo, tiny_run, {
        # OSEM settings: each scan's job (its counts, drawn again with the same seed, and its
        # reconstructions) and what follows
        "osem": ({"dose": {**dose, "iterations": 3}}, {"dose_reconstruct": 5, **after_recon}),
        # the count scale: everything of the branch
        "counts": ({"dose": {**dose, "total_counts": 3e7}}, {**DOSE_JOBS, "all": 1}),
        # patches: the patches and the regression
        "npatch": ({"dose": {**dose, "patches_per_plane": 5}}, {
            "dose_patches": 5, "dose_train": 2, "dose_table": 1, "dose_figure": 2, "all": 1}),
        # training settings: the regression only; another regime adds its job, the others' runs are kept
        "epochs": ({"dose": {**dose, "training": {**training, "max_epochs": 3}}}, {
            "dose_train": 2, "dose_table": 1, "dose_figure": 2, "all": 1}),
        "regimes": ({"dose": {**dose, "training": regimes}}, {
            "dose_train": 1, "dose_table": 1, "dose_figure": 2, "all": 1}),
    })
    # the training device (training.device) is the regression's too
    assert _rerun(repo, tiny_run, "device", {"training": {**TINY["training"], "device": "cpu"}})["dose_train"] == 2


def test_user_events_feed_the_dose_branch(repo, tiny_run, tmp_path):
    """A user's list-mode file (events + sidecar) replaces the simulation for that scan."""
    from braindl import dose as dose_mod

    npz = next((tiny_run / "results/dose").glob("sub-*/ses-01/pet/*_desc-counts_sinogram.npz"))
    sub = npz.name.split("_")[0]
    with np.load(npz) as z:
        full, affine = z["counts"][-1].astype(np.int64), z["affine"]
    events = np.random.default_rng(0).permutation(np.repeat(np.arange(full.size), full.ravel()))
    (tmp_path / "events").mkdir()
    dose_mod.write_events(tmp_path / "events" / f"{sub}_ses-01_events.npy", [events], full.shape, affine)
    over = {"synthetic": TINY["synthetic"], "dose": {**TINY["dose"], "events_dir": str(tmp_path / "events")}}
    (tmp_path / "events.yaml").write_text(yaml.safe_dump(over))
    target = f"results/dose/{sub}/ses-01/pet/{sub}_ses-01_desc-dose1_pet.nii.gz"
    smk(repo, tmp_path, target, "--cores", "2", "--configfile", "events.yaml")
    meta = json.loads((tmp_path / target.replace("dose1_pet.nii.gz", "counts_sinogram.json")).read_text())
    assert not meta["Simulated"] and meta["Events"] == full.sum() == meta["CountsPerLevel"]["100"]
    assert abs(meta["CountsPerLevel"]["1"] / full.sum() - 0.01) < 0.002
    assert (tmp_path / target).is_file()


def test_report_holds_every_figure_and_table_with_its_caption(repo, tiny_run):
    smk(repo, tiny_run, "--configfile", "tiny.yaml", "--report", "report.html")
    html = (tiny_run / "report.html").read_text()
    figures = sorted(p.name for p in (tiny_run / "results/figures").glob("*.png"))
    assert len(figures) > 20
    tables = ["task-CN_vs_AD_T1w_metrics.tsv", "task-CN_vs_AD_T1w_variants.tsv", "pet_desc-syn_comparison.tsv",
              "desc-syn_qc.tsv", "_sweep.tsv", "atlas-AAL3_groundtruth.tsv", "atlas-AAL3_robustnesssummary.tsv",
              "method-lrpepsilon_atlas-AAL3_regionsummary.tsv", "quality_scores.tsv", "quality_runs.tsv"]
    for name in figures + tables:
        assert name in html, name
    # the thesis' studies and external validation are off in the tiny run: tests/test_studies_workflow.py
    off = {"pifstudy.rst", "msstudy.rst", "external.rst"}
    for caption in sorted(c for c in (repo / "rules/captions").glob("*.rst") if c.name not in off):
        opening = re.split(r"``|{{|{%", caption.read_text())[0].strip()[:40]
        assert opening and opening in html, caption.name

# last in this module: it retrains one run of the tiny cohort
def test_profile_runs_one_figure_through_a_real_slurm(repo, tiny_run, tmp_path_factory):
    """profiles/slurm on a real single-node SLURM: one figure's jobs are submitted with sbatch, the
    training job asks for its GPU through the plugin's `gpu` resource, and the figure is rebuilt."""
    import slurm_cluster

    profile = yaml.safe_load((repo / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["set-resources"]["train"]["gpu"] == 1
    # short per-scan jobs travel in groups; every group the rules name is sized in the profile
    groups = {g.split("=")[0] for g in profile["group-components"]}
    named = set(re.findall(r'group:\s*\n\s*"(\w+)"', "".join(p.read_text() for p in (repo / "rules").glob("*.smk"))))
    assert named == groups == {"session", "dose_scan", "heatmap_summary"}
    assert not any("slurm_extra" in r for r in profile["set-resources"].values())
    try:
        state = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except slurm_cluster.Unavailable as err:
        pytest.skip(str(err))
    try:
        fig = tiny_run / "results/figures/task-CN_vs_AD_T1w_roc.png"
        before = fig.stat().st_mtime
        model = "results/training/task-CN_vs_AD/T1w/desc-syn/task-CN_vs_AD_desc-syn_split-01_run-01_model.pt"
        out = smk(repo, tiny_run, "results/figures/task-CN_vs_AD_T1w_roc.png", "--configfile", "tiny.yaml",
                  "--profile", str(repo / "profiles/slurm"), f"--forcerun={model}", "--slurm-status-command", "squeue",
                  "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "1", "--verbose")
        text = out.stdout + out.stderr
        ids = re.findall(r"submitted with SLURM jobid (\d+)", text)
        assert len(ids) == 2, text[-5000:]  # the forced run and the evaluation; the figure is a local rule
        assert re.search(r"localrule figure_roc:", text), text[-5000:]
        assert set(slurm_cluster.job_states(ids).values()) == {"COMPLETED"}
        assert fig.stat().st_mtime > before
        calls = [line for line in text.splitlines() if line.startswith("sbatch call:") and "rule_train/" in line]
        assert len(calls) == 1
        options = calls[0].split("--wrap")[0]
        res = profile["set-resources"]["train"]
        for expected in ("--gpus=1", f"-t {res['runtime']}", f"--mem {res['mem_mb']}",
                         f"--cpus-per-task={res['cpus_per_task']}"):
            assert expected in options, options
        assert "--gres" not in options
    finally:
        slurm_cluster.stop(state)
