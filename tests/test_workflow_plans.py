"""The real Snakefile's plans, without running a job: dry runs of config.yaml, the full protocol and the
local profile, and settings refused at parse time. (The tiny end-to-end run and its reruns are in
test_workflow.py: a module of its own, so that these tests run beside that run.)"""

import os
import re
from pathlib import Path

import pytest
import yaml

from braindl import synthetic
from braindl.architectures import heatmap_refusal, method_specs
from snakemake_runs import dry_runs_changed, job_counts, smk
from test_workflow import TINY

# every test here plans the real Snakefile (dry runs of seconds)
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def test_dry_run_default_config(repo, tmp_path, default_config):
    out = smk(repo, tmp_path, "-n", "all")
    counts = job_counts(out.stdout + out.stderr)
    cohort = synthetic.cohort_table(default_config["synthetic"])
    assert counts["synthetic_cohort"] == 1  # model, effect maps and every session in one job
    assert counts["check_inputs"] == 1 and counts["all"] == 1
    n_sessions = int(cohort["n_sessions"].sum())
    variants = default_config["registration"]["variants"]
    assert counts["extract"] == n_sessions  # N4 and the native masks: once per session, for every variant
    for v in variants:
        assert counts[f"register_{v}"] == n_sessions
    assert counts["strip_crop"] == len(variants) * n_sessions and "crop" not in counts  # one job strips and crops
    assert counts["qc_table"] == 1  # exclusions are decided per scan over all variants
    tr, xf = default_config["training"], default_config["transfer"]
    pre = default_config["pretraining"]
    assert counts["splits"] == len(set(tr["tasks"]) | set(xf["tasks"]) | {pre["source_task"], pre["target_task"]})
    extra_pack = xf["modality"] not in tr["modalities"]
    assert counts["pack"] == len(variants) * len(tr["modalities"]) + extra_pack
    n_runs = default_config["splits"]["n_splits"] * default_config["splits"]["n_repeats"]
    # the jobs per unit of every training rule (resources.training_job_runs)
    per_unit = {"unit": 1, "split": default_config["splits"]["n_splits"], "run": n_runs}[
        default_config["resources"]["training_job_runs"]]
    assert counts["train"] == len(tr["tasks"]) * len(tr["modalities"]) * len(variants) * per_unit
    assert counts["evaluate"] == len(tr["tasks"]) * len(tr["modalities"])
    for fig in ("variants", "roc", "splits"):
        assert counts[f"figure_{fig}"] == counts["evaluate"]
    arms = xf["models"]
    assert counts["mosaic"] == len({a["layout"] for a in arms.values() if a["input"] == "mosaic"})
    assert counts["train_model"] == len(xf["tasks"]) * len(arms) * per_unit
    assert counts["transfer_table"] == counts["transfer_roc"] == 1
    assert counts["transfer_metrics"] == len(xf["tasks"])
    assert counts["transfer_embedding"] == len(arms)
    n_sizes = len(pre["fractions"])
    # the sweep reuses the transfer experiment's runs it would repeat: pre-training on all of a split's
    # participants (source task) and fine-tuning without pre-training (target task)
    n_pre = n_sizes - (pre["source_task"] in xf["tasks"] and 1.0 in pre["fractions"])
    assert counts["sweep_split"] == n_pre * default_config["splits"]["n_splits"]
    assert counts["pretrain"] == n_pre * per_unit
    assert counts["finetune"] == (n_sizes + (pre["target_task"] not in xf["tasks"])) * per_unit
    assert counts["sweep_table"] == counts["sweep_figure"] == 1
    hm = default_config["heatmaps"]
    methods = [s for s in method_specs(hm["methods"], hm).values() if not heatmap_refusal(tr["model"], s["method"])]
    units = len(hm["tasks"]) * len(tr["modalities"]) * len(hm["variants"])
    # one heatmap job per unit and method computes the maps of every run
    assert counts["heatmap"] == units * len(methods) and not hm["transfer_models"]
    for rule in ("heatmap_summary", "heatmap_figures"):
        assert counts[rule] == units * len(methods)
    assert counts["heatmap_robustness"] == counts["heatmap_groundtruth"] == units
    dc, dt = default_config["dose"], default_config["dose"]["training"]
    assert counts["dose_reconstruct"] == dc["patients"] and "dose_resample" not in counts  # one job per scan
    assert counts["dose_patches"] == dc["patients"] and counts["dose_scores"] == 1  # every level of a scan
    # a dose regression job trains every run of its backbone and regime (resources.training_job_runs: unit)
    assert default_config["resources"]["training_job_runs"] == "unit"
    assert counts["dose_train"] == len(dt["models"]) * len(dt["regimes"])
    assert counts["dose_table"] == counts["dose_figure_levels"] == 1 and counts["dose_figure"] == 2
    # the default external dataset: its own preprocessing (a module, in its own results tree), one prediction
    # job per run and variant, its tables and figure, and heatmaps where heatmaps.variants has the variant
    ext = default_config["external"]
    for name, spec in ext["datasets"].items():
        other = synthetic.cohort_table({**default_config["synthetic"], **spec["synthetic"]})
        n_ext = int(other["n_sessions"].sum())
        assert counts[f"external_{name}_extract"] == n_ext and counts[f"external_{name}_synthetic_cohort"] == 1
        assert counts[f"external_{name}_strip_crop"] == n_ext * len(ext["variants"])
        assert f"external_{name}_train" not in counts  # nothing is fitted on it
    n_ext_sets = len(ext["datasets"]) * len(ext["tasks"]) * len(ext["modalities"])
    assert counts["external_predict"] == n_ext_sets * len(ext["variants"]) * n_runs
    assert counts["external_predictions"] == counts["external_metrics"] == counts["external_figure"] == n_ext_sets
    ext_heat = [v for v in ext["variants"] if v in hm["variants"]]
    assert counts["external_heatmap"] == n_ext_sets * len(ext_heat) * len(ext["heatmap_methods"])


def test_heatmap_jobs_hold_the_runs_heatmaps_job_runs_gives_them(repo, tmp_path, default_config):
    """heatmaps.job_runs: one heatmap job per unit and method for all its runs (the default), per split, or
    per run; every mode plans every run's maps (the group maps and the figures need all of them)."""
    # two repeats per split, so that the three modes differ (the rest of config.yaml merged in by Snakemake)
    n_splits, n_repeats = default_config["splits"]["n_splits"], 2
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"splits": {"n_repeats": n_repeats}}))
    got = dry_runs_changed(repo, tmp_path, "base.yaml", {m: {"heatmaps": {"job_runs": m}} for m in ("unit", "split", "run")})
    assert got["unit"]["heatmap"] > 0 and got["unit"]["external_heatmap"] > 0
    for rule in ("heatmap", "external_heatmap"):
        assert got["split"][rule] == got["unit"][rule] * n_splits
        assert got["run"][rule] == got["unit"][rule] * n_splits * n_repeats
    # nothing else changes
    for mode in ("split", "run"):
        assert {k: v for k, v in got[mode].items() if k not in ("heatmap", "external_heatmap")} == \
            {k: v for k, v in got["unit"].items() if k not in ("heatmap", "external_heatmap")}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"heatmaps": {"job_runs": "fold"}}))
    bad = smk(repo, tmp_path, "-n", "all", "--configfile", "bad.yaml", check=False)
    assert bad.returncode != 0 and "job_runs" in bad.stdout + bad.stderr


TRAINING_RULES = ("train", "train_model", "pretrain", "finetune", "ms_train")


def test_training_jobs_hold_the_runs_resources_training_job_runs_gives_them(repo, tmp_path, default_config):
    """resources.training_job_runs: one training job per unit for all its runs (the default), per split, or
    per run, for every rule that trains (study 2's arms included); study 5's searches one job per task,
    family and fraction, or per split (a search trains its samples together); nothing else changes."""
    n_splits, n_repeats = default_config["splits"]["n_splits"], 2
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "splits": {"n_repeats": n_repeats}, "ms_study": {"enabled": True}, "pif_study": {"tasks": ["CN_vs_AD"]},
        "synthetic": {"groups": {**default_config["synthetic"]["groups"], "MS": 3}}}))
    got = dry_runs_changed(repo, tmp_path, "base.yaml",
                           {m: {"resources": {"training_job_runs": m}} for m in ("unit", "split", "run")})
    searches = {m: got[m].pop("pif_search") for m in got}
    # the dose regression: one job per backbone and regime, per training size, or per run
    dose = {m: got[m].pop("dose_train") for m in got}
    dt = default_config["dose"]["training"]
    assert dose["unit"] == len(dt["models"]) * len(dt["regimes"])
    assert dose["split"] == dose["unit"] * len(dt["sizes"])
    assert dose["run"] == dose["split"] * (dt["folds"] + dt["ensemble_runs"] - 1) > dose["split"]
    assert searches["unit"] == 2 * len(default_config["pif_study"]["fractions"])  # both families
    assert searches["split"] == searches["run"] == searches["unit"] * n_splits
    for rule in TRAINING_RULES:
        assert got["unit"][rule] > 0, rule
        assert got["split"][rule] == got["unit"][rule] * n_splits, rule
        assert got["run"][rule] == got["unit"][rule] * n_splits * n_repeats, rule
    for mode in ("split", "run"):
        assert {k: v for k, v in got[mode].items() if k not in TRAINING_RULES} == \
            {k: v for k, v in got["unit"].items() if k not in TRAINING_RULES}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"resources": {"training_job_runs": "fold"}}))
    bad = smk(repo, tmp_path, "-n", "all", "--configfile", "bad.yaml", check=False)
    assert bad.returncode != 0 and "training_job_runs" in bad.stdout + bad.stderr


def test_bad_config_is_refused_naming_the_key(repo, tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"training": {"batch_size": "big"}}))
    out = smk(repo, tmp_path, "-n", "all", "--configfile", "bad.yaml", check=False)
    assert out.returncode != 0
    assert "['training']['batch_size']" in out.stdout + out.stderr
    # a synthetic group with subjects must be a diagnosis of the dataset; an empty one (MS: 0) need not
    (tmp_path / "dx.yaml").write_text(yaml.safe_dump({"synthetic": {"groups": {"CN": 2, "AD": 2, "PD": 2}}}))
    out = smk(repo, tmp_path, "-n", "all", "--configfile", "dx.yaml", check=False)
    assert out.returncode != 0
    assert "synthetic.groups has subjects of diagnoses ['PD'] missing from dataset.diagnoses" in out.stdout + out.stderr


def test_network_too_deep_for_a_crop_is_refused_before_any_job(repo, tmp_path):
    # the thesis network pools 2/3/2/3: after input_pool 2, the 60 slices of the PET crop run out
    (tmp_path / "pet.yaml").write_text(yaml.safe_dump({"training": {"modalities": ["T1w", "pet"]}}))
    out = smk(repo, tmp_path, "-n", "all", "--configfile", "pet.yaml", check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "training.model on the pet crop (crop.box.pet_000)" in text and "input_pool 2" in text
    assert "(79, 95, 60) volume is too small" in text
    ok = {"training": {"modalities": ["T1w", "pet"], "input_pool": 1}}
    (tmp_path / "pet1.yaml").write_text(yaml.safe_dump(ok))
    assert smk(repo, tmp_path, "-n", "all", "--configfile", "pet1.yaml", check=False).returncode == 0


def _hub_with_weights(tmp_path, config):
    """A torch hub cache holding a file for every ImageNet backbone ``config`` asks for (the dry run only
    checks that they exist; loading them is tested in test_backbones)."""
    from braindl.architectures import BACKBONES

    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    defaults = yaml.safe_load((REPO / "config.yaml").read_text())["transfer"]["models"]
    for name, arm in config["transfer"]["models"].items():
        arm = {**defaults.get(name, {}), **arm}  # Snakemake merges the config files key by key
        if arm.get("weights") == "imagenet":
            (ckpt / BACKBONES[arm["model"]][1]).write_bytes(b"")
    if config.get("dose", {}).get("training", {}).get("weights") == "imagenet":
        for name in config["dose"]["training"]["models"]:
            (ckpt / BACKBONES[name][1]).write_bytes(b"")
    return {**os.environ, "TORCH_HOME": str(tmp_path / "torch")}


# the full protocol's cohort at a fifth of its size: every rule and setting of the protocol, a DAG of about a
# third of its 17,751 jobs (benchmarks/job_counts.py plans the whole one)
FIFTH = {"synthetic": {"groups": {"CN": 24, "MCI": 20, "AD": 20, "DLB": 10, "FTLD": 6, "MS": 16}},
         "external": {"datasets": {"site2": {"bids_dir": None, "synthetic": {
             "seed": 7, "groups": {"CN": 8, "MCI": 4, "AD": 8, "DLB": 0, "FTLD": 0, "MS": 0}, "sessions": [1, 1]}}}}}


def test_full_protocol_dry_run(repo, tmp_path, default_config):
    """The README's full-protocol command builds its DAG (targets before --configfile), on a fifth of its cohort."""
    full = yaml.safe_load((repo / "configs/full_protocol.yaml").read_text())
    env = _hub_with_weights(tmp_path, full)
    (tmp_path / "fifth.yaml").write_text(yaml.safe_dump(FIFTH))
    out = smk(repo, tmp_path, "-n", "all", "--cores", "32", "--configfile", str(repo / "configs/full_protocol.yaml"),
              "fifth.yaml", env=env)
    counts = job_counts(out.stdout + out.stderr)
    n_sessions = int(synthetic.cohort_table({**default_config["synthetic"], **full["synthetic"],
                                             **FIFTH["synthetic"]})["n_sessions"].sum())
    assert counts["synthetic_cohort"] == 1
    variants = {**default_config["registration"], **full.get("registration", {})}["variants"]
    assert all(counts[f"register_{v}"] == n_sessions for v in variants)
    # what does not scale with the cohort is the protocol's whole: 004's 10 splits x 5 runs per task, modality
    # and variant; study 5 and study 2 switched on
    tr, sp = full["training"], full["splits"]
    n_runs = sp["n_splits"] * sp["n_repeats"]
    assert counts["train"] == len(tr["tasks"]) * len(tr["modalities"]) * len(variants) * n_runs == 900
    assert counts["pif_search"] > 0 and counts["ms_train"] == 3 * n_runs
    assert counts["train_model"] == len(full["transfer"]["tasks"]) * len(
        {*default_config["transfer"]["models"], *full["transfer"]["models"]}) * n_runs


def test_finetuning_runs_depend_on_their_source_task(repo, tmp_path):
    """Two-stage transfer: a CN_AD_DLB run starts from the CN_vs_AD run of the same variant, split and run."""
    over = {"training": {"tasks": ["CN_vs_AD", "CN_AD_DLB"], "finetune_from": "CN_vs_AD", "freeze": "head_only"}}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(over))
    target = "results/training/task-CN_AD_DLB/T1w/desc-linear/task-CN_AD_DLB_desc-linear_split-01_run-01_model.pt"
    out = smk(repo, tmp_path, target, "-n", "--configfile", "ft.yaml")
    counts = job_counts(out.stdout + out.stderr)
    assert counts["train"] == 2 and counts["splits"] == 2
    assert "task-CN_vs_AD_desc-linear_split-01_run-01_model.pt" in out.stdout + out.stderr
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"training": {"finetune_from": "CN_AD_DLB"}}))
    bad = smk(repo, tmp_path, "all", "-n", "--configfile", "bad.yaml", check=False)
    assert bad.returncode != 0 and "training.finetune_from" in bad.stdout + bad.stderr


@pytest.mark.parametrize("change, message", [
    ({"training": {"sizes": [1, 8]}}, "dose.training: 5 dose patients"),
    ({"levels": [1, 50, 100]}, "dose levels [50.0] belong to no group"),
    ({"training": {"models": ["cnn3d_thesis"]}}, "is not a 2D backbone"),
    ({"scores": "missing.tsv"}, "missing.tsv: dose scores table not found"),
])
def test_bad_dose_settings_are_refused_at_parse_time(repo, tmp_path, change, message):
    over = yaml.safe_load(yaml.safe_dump({k: TINY[k] for k in ("synthetic", "dose")}))
    dose = {**over["dose"], **change}
    if "training" in change:
        dose["training"] = {**over["dose"]["training"], **change["training"]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**over, "dose": dose}))
    out = smk(repo, tmp_path, "all", "-n", "--configfile", "bad.yaml", check=False)
    assert out.returncode != 0 and message in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("change, message", [
    ({"models": {"r": {"model": "resnet18", "input": "mosaic", "layout": "pet_000", "weights": "imagenet"}}},
     "resnet18-f37072fd.pth not found"),
    ({"models": {"r": {"model": "resnet18", "input": "volume"}}}, "takes mosaic input"),
    ({"models": {"r": {"model": "resnet18", "input": "mosaic", "layout": "nope"}}}, "layout 'nope'"),
    ({"models": {"r": {"model": "resnet18", "input": "mosaic", "layout": "big"}}}, "do not fit"),
    ({"variant": "linear", "roc_task": "MMSE"}, "transfer.roc_task"),
])
def test_bad_transfer_settings_are_refused_at_parse_time(repo, tmp_path, change, message):
    over = {"transfer": change, "mosaic": {"layouts": {"big": {"rows": 2, "columns": 2, "axis": 2, "slices": "all",
                                                               "interleave": 1}}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(over))
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "empty")}
    out = smk(repo, tmp_path, "all", "-n", "--configfile", "bad.yaml", check=False, env=env)
    assert out.returncode != 0 and message in out.stdout + out.stderr, out.stdout + out.stderr


@pytest.mark.parametrize("change, message", [
    ({"variants": ["none"]}, "['heatmaps']['variants']"),  # the schema: none has no common space
    ({"tasks": ["MMSE"]}, "['heatmaps']['tasks']"),  # regression: no class to attribute
    ({"target_class": "DLB"}, "heatmaps.target_class 'DLB' is not a class of task CN_vs_AD"),
    ({"transfer_models": ["vit"]}, "heatmaps.transfer_models ['vit'] are not in transfer.models"),
    ({"display_group": "XX"}, "heatmaps.display_group 'XX' is not one of"),
    ({"methods": ["saliency"]}, "['heatmaps']['methods']"),
    ({"methods": ["occlusion_slice"], "occlusion_slice_stride": 6},
     "heatmaps.occlusion_slice_stride 6 is larger than the window's smaller side 5"),
])
def test_bad_heatmap_settings_are_refused_at_parse_time(repo, tmp_path, change, message):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"heatmaps": change}))
    out = smk(repo, tmp_path, "all", "-n", "--configfile", "bad.yaml", check=False)
    assert out.returncode != 0 and message in out.stdout + out.stderr, out.stdout + out.stderr


def test_heatmap_methods_that_do_not_apply_are_left_out_with_a_message(repo, tmp_path):
    change = {"training": {"model": "cnn3d_ms"}, "heatmaps": {"methods": ["guided_backprop", "gradient_x_input"],
                                                              "transfer_models": ["resnet18"]}}
    (tmp_path / "ms.yaml").write_text(yaml.safe_dump(change))
    out = smk(repo, tmp_path, "all", "-n", "--configfile", "ms.yaml")
    text = out.stdout + out.stderr
    assert "heatmaps: left out for cnn3d_ms: guided backpropagation needs ReLU nonlinearities" in text
    assert "guidedbackprop" in text and "model-resnet18" in text  # the ResNet's guided backprop stays
    assert "model-cnn3d_ms_split-01_run-01_method-guidedbackprop" not in text


def test_local_profile_limits_gpus_and_sets_threads(repo, tmp_path):
    profile = yaml.safe_load((repo / "profiles/local/config.yaml").read_text())
    assert profile["resources"] == ["gpu=1"] and profile["set-threads"]["register_syn"] > 1
    out = smk(repo, tmp_path, "all", "-n", "--profile", str(repo / "profiles/local"))
    text = out.stdout + out.stderr
    assert job_counts(text)["train"] > 0
    # the profile's threads reach the jobs: registration with 4, training with 2
    assert re.search(r"rule register_syn:(?:.|\n)*?threads: 4", text) and re.search(r"rule train:(?:.|\n)*?threads: 2", text)


def test_without_a_profile_only_the_cohort_generators_hold_two_cores_and_training_goes_first(repo, tmp_path):
    """On two cores (the quick start's), a job that holds both waits until every other job has ended and
    leaves a core idle meanwhile: the external dataset's input check (2 threads) once waited until the end
    of the run, and each dose reconstruction opened a gap. Without a profile only the synthetic cohorts
    hold more than one core: they run first, before anything else is ready (the profiles set threads).
    Training jobs and what they read carry a priority, so that they start before tables and figures."""
    jobs = _planned_jobs(repo, tmp_path)
    many = {rule for rule, n, _ in jobs if n > 1}
    assert many == {"synthetic_cohort", "external_site2_synthetic_cohort"}, many
    # training jobs and the splits, packs and mosaics they read are started first when several jobs are
    # ready (the run's last minute once held one fine-tuning job on one core, its pack picked late)
    first = {rule for rule, _, priority in jobs if priority > 0}
    # (the external dataset's pack too: its rules are the workflow's own, and its predictions wait on it)
    assert first == {"splits", "sweep_split", "pack", "mosaic", "train", "train_model", "pretrain", "finetune",
                     "external_site2_pack"}, first


def _planned_jobs(repo, tmp_path) -> list[tuple[str, int, int]]:
    """(rule, threads, priority) of each job of a dry run of config.yaml on two cores; Snakemake prints
    "threads:" and "priority:" only where they are more than 1 and 0."""
    out = smk(repo, tmp_path, "-n", "all", "--cores", "2")
    text = out.stdout + out.stderr
    jobs = []
    for block in re.split(r"^(?=\s*(?:local)?rule \w+:$)", text, flags=re.M):  # grouped jobs are indented
        rule = re.search(r"^\s*(?:local)?rule (\w+):$", block, re.M)
        if rule:
            threads, priority = (re.search(rf"^\s+{k}: (\d+)$", block, re.M) for k in ("threads", "priority"))
            jobs.append((rule.group(1), int(threads.group(1)) if threads else 1, int(priority.group(1)) if priority else 0))
    assert len(jobs) == sum(job_counts(text).values())
    return jobs
