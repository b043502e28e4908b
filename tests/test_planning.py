"""braindl.planning: what jobs exist, with which settings, without Snakemake or torch."""

import sys
import zlib
from pathlib import Path

import pytest
import yaml

from braindl import planning


def test_planning_imports_neither_torch_nor_snakemake():
    import subprocess

    code = ("import sys; sys.modules['torch'] = None; sys.modules['snakemake'] = None; "
            "import braindl.planning as p; print(len(p.NAMED_DICTS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "5", out.stderr


def test_the_workflow_parse_imports_no_heavy_library():
    """Every Snakemake process (dry runs, each cluster job) imports the modules the rule files import:
    none of them may pull torch, scikit-learn (1 s of the parse), MONAI, captum, ANTs or matplotlib."""
    import re
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = "\n".join(p.read_text() for p in [root / "Snakefile", *sorted((root / "rules").rglob("*.smk"))])
    blocks = re.findall(r"^from braindl import \(([^)]*)\)", text, re.M) + re.findall(
        r"^from braindl import ([\w, ]+)$", text, re.M)
    mods = {f"braindl.{m.strip()}" for block in blocks for m in block.split(",") if m.strip()}
    mods |= set(re.findall(r"^from (braindl\.\w+) import", text, re.M))
    assert {"braindl.splits", "braindl.pifstudy", "braindl.planning", "braindl.provenance"} <= mods
    heavy = ("torch", "sklearn", "monai", "captum", "ants", "matplotlib")
    code = "import sys\n" + "".join(f"sys.modules[{h!r}] = None\n" for h in heavy) + "".join(
        f"import {m}\n" for m in sorted(mods))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr


def test_dose_runs_are_folds_plus_the_ensemble_on_fold_0(default_config):
    t = {**default_config["dose"]["training"], "models": ["resnet18", "densenet121"], "regimes": ["head_only"],
         "sizes": [1, 4], "folds": 3, "ensemble_runs": 5}
    runs = planning.dose_runs(t)
    assert len(runs) == 2 * 1 * 2 * (3 + 5 - 1)
    first = [r for r in runs if r["model"] == "resnet18" and r["n"] == 1]
    assert [(r["fold"], r["run"]) for r in first] == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 0), (2, 0)]
    assert planning.dose_runs(t, enabled=False) == []


def test_dose_jobs_cover_every_run_once_in_every_mode(default_config):
    """resources.training_job_runs for the dose regression: a job trains all of a backbone and regime's
    runs (unit), one training size's folds and runs (split) or one run; over its jobs each mode trains
    every run of dose_runs once, in its order."""
    t = {**default_config["dose"]["training"], "models": ["resnet18"], "regimes": ["none"], "sizes": [1, 4],
         "folds": 3, "ensemble_runs": 2}
    every = [(str(r["n"]), str(r["fold"]), str(r["run"])) for r in planning.dose_runs(t)]
    assert len(every) == 2 * (3 + 2 - 1)
    jobs = {"unit": [{}], "split": [{"n": "1"}, {"n": "4"}],
            "run": [{"n": n, "fold": f, "run": r} for n, f, r in every]}
    for mode, given in jobs.items():
        assert [x for job in given for x in planning.dose_job_runs(t, mode, **job)] == every, mode
    # without a job's values: the wildcards of the rule's outputs, and of its log
    assert planning.dose_job_runs(t, "split") == [("{n}", "0", "0"), ("{n}", "0", "1"), ("{n}", "1", "0"),
                                                  ("{n}", "2", "0")]
    assert planning.dose_job_runs(t, "run") == [("{n}", "{fold}", "{run}")]
    assert [planning.dose_job_label(m) for m in planning.JOB_RUNS] == ["", "_n-{n}", "_n-{n}_fold-{fold}_run-{run}"]
    with pytest.raises(ValueError, match="resources.training_job_runs: 'fold' is none of unit, split, run"):
        planning.dose_job_runs(t, "fold")


def test_dose_seeds_are_per_scan_and_stable():
    a = planning.dose_seed(0, "001", "01")
    assert a == zlib.crc32(b"001_01") % 100000
    assert planning.dose_seed(5, "001", "01") == a + 5
    assert planning.dose_seed(0, "001", "01", "10") != a != planning.dose_seed(0, "002", "01")


def test_dose_training_needs_its_patients(default_config):
    t = {**default_config["dose"]["training"], "sizes": [1, 8], "validation_patients": 2, "test_patients": 3}
    assert planning.dose_training_problems(13, t) == []
    assert planning.dose_training_problems(12, t) == [
        "12 dose patients, but test_patients + validation_patients + max(sizes) = 13"]
    s = planning.dose_train_settings(default_config["dose"], "resnet18", "head_only", "cpu")
    assert s["max_epochs"] == default_config["dose"]["training"]["max_epochs"] and s["device"] == "cpu"
    assert s["early_stopping_patience"] == default_config["dose"]["training"]["patience"]


def test_training_settings_leave_out_what_reruns_nothing(default_config):
    s = planning.training_settings(default_config)
    assert "tasks" not in s and "modalities" not in s and "finetune_from" not in s
    assert "pif_grid" not in s and s["max_epochs"] == default_config["training"]["max_epochs"]
    pif = {**default_config, "training": {**default_config["training"], "model": "pif3d_a"}}
    assert planning.training_settings(pif)["pif_grid"] == default_config["training"]["pif_grid"]


def test_a_2d_transfer_model_layers_training_defaults_2d_and_its_own_keys(default_config):
    cfg = {**default_config, "transfer": {**default_config["transfer"], "models": {
        "r18": {"model": "resnet18", "input": "mosaic", "layout": "pet_000", "max_epochs": 3, "head": "sigmoid"},
        "c3": {"model": "vgg3d_pet", "input": "volume", "dropout": 0.5}}}}
    r18 = planning.transfer_arm_settings(cfg, "r18")
    assert r18["max_epochs"] == 3 and r18["head"] == "sigmoid"  # the model's own keys last
    assert r18["head_width"] == default_config["transfer"]["defaults_2d"]["head_width"]
    assert r18["rgb"] == default_config["mosaic"]["rgb"] and "input_pool" not in r18 and "layout" not in r18
    assert r18["pretrained"] is None and r18["freeze"] == "none" and "pif_grid" not in r18
    c3 = planning.transfer_arm_settings(cfg, "c3")
    assert c3["input_pool"] == default_config["training"]["input_pool"] and c3["dropout"] == 0.5
    assert "head_width" not in c3 and c3["learning_rate"] == default_config["training"]["learning_rate"]


def test_heatmap_units_and_the_problems_named(default_config):
    hm = {**default_config["heatmaps"], "tasks": ["CN_vs_AD"], "variants": ["linear", "syn"],
          "transfer_models": ["resnet18"]}
    cfg = {**default_config, "heatmaps": hm, "registration": {**default_config["registration"],
                                                             "variants": ["none", "linear", "syn"]}}
    assert planning.heatmap_problems(cfg) == []
    model = default_config["training"]["model"]
    assert planning.heatmap_units(cfg) == [("CN_vs_AD", "T1w", "linear", model), ("CN_vs_AD", "T1w", "syn", model),
                                           ("CN_vs_AD", "pet", "syn", "resnet18")]
    bad = {**cfg, "heatmaps": {**hm, "variants": ["affine"]}}
    assert planning.heatmap_problems(bad) == ["heatmaps.variants ['affine'] are not in registration.variants "
                                              "['linear', 'none', 'syn']"]
    dlb = {**cfg, "heatmaps": {**hm, "target_class": "DLB"}}
    assert "heatmaps.target_class 'DLB' is not a class of task CN_vs_AD" in planning.heatmap_problems(dlb)[0]
    off = {**cfg, "heatmaps": {**hm, "tasks": []}}
    assert planning.heatmap_units(off) == [] and planning.heatmap_problems(off) == []


def test_transfer_and_sweep_problems_are_named(default_config, tmp_path, monkeypatch):
    assert planning.transfer_problems(default_config) == [] and planning.pretraining_problems(default_config) == []
    xf = default_config["transfer"]
    wrong = {**default_config, "transfer": {**xf, "models": {**xf["models"], "v": {"model": "resnet18", "input": "volume"}}}}
    assert planning.transfer_problems(wrong) == ["transfer.models.v: model resnet18 takes mosaic input, not volume"]
    lay = {**default_config, "transfer": {**xf, "models": {"r": {"model": "resnet18", "input": "mosaic", "layout": "x"}}}}
    assert "layout 'x' is not one of mosaic.layouts" in planning.transfer_problems(lay)[0]
    # ImageNet weights are looked up in the torch hub cache: missing, then present (a file the test writes)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    imnet = {**default_config, "transfer": {**xf, "models": {"r": {**xf["models"]["resnet18"], "weights": "imagenet"}}}}
    assert planning.transfer_problems(imnet)[0].endswith("resnet18-f37072fd.pth not found")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"")
    assert planning.transfer_problems(imnet) == []
    off = {**default_config, "transfer": {**xf, "tasks": []}}
    assert planning.transfer_problems(off) == [] and planning.transfer_models(off) == {}
    # the sweep's model must be a transfer model in use, its tasks two
    pre = default_config["pretraining"]
    assert planning.pretraining_problems(off) == [f"pretraining.model {pre['model']!r} is not one of transfer.models []"]
    same = {**default_config, "pretraining": {**pre, "target_task": pre["source_task"]}}
    assert planning.pretraining_problems(same) == ["pretraining.source_task and target_task must differ"]


def test_split_tasks_and_the_modalities_their_splits_need(default_config):
    cfg = {**default_config, "pif_study": {**default_config["pif_study"], "tasks": ["sex"]},
           "ms_study": {**default_config["ms_study"], "enabled": True}}
    tr, xf, pre = cfg["training"], cfg["transfer"], cfg["pretraining"]
    tasks = planning.split_tasks(cfg)
    assert tasks[: len(tr["tasks"])] == tr["tasks"] and tasks[-2:] == ["sex", "CN_vs_MS"]
    assert len(tasks) == len(set(tasks)) and set(xf["tasks"]) | {pre["source_task"], pre["target_task"]} <= set(tasks)
    # CN vs AD: the 3D runs on T1w, the transfer experiment on PET, study 2's pre-training on T1w
    assert planning.split_modalities(cfg, "CN_vs_AD") == sorted({*tr["modalities"], xf["modality"]})
    assert planning.split_modalities(cfg, "sex") == [cfg["pif_study"]["modality"]]
    assert planning.split_modalities(cfg, "CN_vs_MS") == [cfg["ms_study"]["modality"]]
    assert planning.split_modalities(default_config, "CN_vs_MS") == []


def test_study_problems_name_the_setting(default_config):
    assert planning.study_problems(default_config) == []  # both studies off
    on = {**default_config, "pif_study": {**default_config["pif_study"], "tasks": ["CN_vs_AD"]},
          "ms_study": {**default_config["ms_study"], "enabled": True}}
    assert planning.study_problems(on) == []
    bad = {**on, "pif_study": {**on["pif_study"], "variant": "syn"},
           "registration": {**on["registration"], "variants": ["none", "linear"]}}
    assert planning.study_problems(bad) == ["pif_study.variant 'syn' is not one of registration.variants "
                                            "['none', 'linear']"]
    # pooled by 8 first, the 60-slice PET crop leaves too little for study 2's network
    pet = {**on, "ms_study": {**on["ms_study"], "modality": "pet"},
           "training": {**on["training"], "input_pool": 8}, "pif_study": {**on["pif_study"], "tasks": []}}
    problems = planning.study_problems(pet)
    assert len(problems) == 1 and problems[0].startswith("ms_study on the pet crop:")
    assert problems[0].endswith("lower training.input_pool")


def test_synthetic_selection_lists_the_cohort_without_images(default_config, tmp_path):
    from braindl import synthetic

    cfg = {**default_config, "results_dir": str(tmp_path / "res"),
           "synthetic": {**default_config["synthetic"], "groups": {"CN": 2, "MCI": 0, "AD": 1, "DLB": 0, "FTLD": 0,
                                                                   "MS": 0}, "sessions": [1, 2]}}
    sel = planning.dataset_selection(cfg)
    table = synthetic.cohort_table(cfg["synthetic"])
    assert sel.bids_dir == f"{tmp_path}/res/synthetic/bids" and not (tmp_path / "res").exists()
    assert len(sel.scans) == 2 * table["n_sessions"].sum() and set(sel.scans.modality) == {"T1w", "pet"}
    assert sel.modality_sets == [("T1w", "pet")] and all(m == ("T1w", "pet") for m in sel.sessions.values())
    assert sorted(sel.diagnoses) == ["AD", "CN"]
    # a diagnosis of the cohort that the dataset does not list stops the run, named
    cfg["dataset"] = {**cfg["dataset"], "diagnoses": ["CN"]}
    with pytest.raises(ValueError, match=r"diagnoses \['AD'\] missing from dataset.diagnoses"):
        planning.dataset_selection(cfg)


def _bids_dataset(root):
    """Two participants with two sessions: sub-01 ses-02 has no T1w, sub-02 ses-01 no PET, and sub-02
    ses-02's PET is a broken link."""
    import nibabel as nib
    import numpy as np
    import pandas as pd

    rows = []
    for sub in ("01", "02"):
        rows.append(dict(participant_id=f"sub-{sub}", diagnosis="CN"))
        for ses in ("01", "02"):
            for folder, name in (("anat", "T1w"), ("pet", "trc-FDG_pet")):
                p = root / f"sub-{sub}" / f"ses-{ses}" / folder / f"sub-{sub}_ses-{ses}_{name}.nii.gz"
                p.parent.mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(p))
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / "sub-02/ses-01/pet/sub-02_ses-01_trc-FDG_pet.nii.gz").unlink()
    (root / "sub-01/ses-02/anat/sub-01_ses-02_T1w.nii.gz").unlink()
    (root / "sub-02/ses-02/pet/sub-02_ses-02_trc-FDG_pet.nii.gz").unlink()
    (root / "sub-02/ses-02/pet/sub-02_ses-02_trc-FDG_pet.nii.gz").symlink_to(root / "gone.nii.gz")


def test_bids_selection_keeps_each_sessions_modalities(default_config, tmp_path):
    """A user's dataset (no generator): a T1w-only session is its own modality set; a PET without its
    session's T1w and a broken link stay out (check_inputs names them)."""
    _bids_dataset(tmp_path)
    cfg = {**default_config, "dataset": {**default_config["dataset"], "bids_dir": str(tmp_path)}}
    sel = planning.dataset_selection(cfg, cache_dir=tmp_path / "cache")
    assert sel.cohort is None and sel.diagnoses == [] and sel.bids_dir == str(tmp_path)
    assert sel.sessions == {("01", "01"): ("T1w", "pet"), ("02", "01"): ("T1w",), ("02", "02"): ("T1w",)}
    assert sel.modality_sets == [("T1w", "pet"), ("T1w",)]
    assert len(sel.scans) == 4


def test_dose_patients_of_a_bids_dataset_and_of_the_synthetic_cohort(default_config, tmp_path):
    """002's dose branch takes each participant's first session with a PET; on a user's dataset only when
    told what to resample, and a scores table's session must have a PET."""
    _bids_dataset(tmp_path)
    bids = {**default_config, "dataset": {**default_config["dataset"], "bids_dir": str(tmp_path)}}
    sel = planning.dataset_selection(bids, cache_dir=tmp_path / "cache")
    off = planning.dose_patients(bids, sel)
    assert off.pairs == [] and "off for this BIDS dataset" in off.notes[0]
    on = {**bids, "dose": {**bids["dose"], "total_counts": 1.0e8}}
    plan = planning.dose_patients(on, sel)
    assert plan.pairs == [("01", "01")] and plan.scores is None  # sub-02 has no usable PET
    assert plan.notes == ["dose: no dose.scores for this BIDS dataset: reconstructions only, no quality regression"]
    levels = on["dose"]["levels"]
    (tmp_path / "scores.tsv").write_text("participant_id\tsession_id\tlevel\tgqr\tpr\tdc\n"
                                         + "".join(f"sub-02\t01\t{v}\t3\t3\t3\n" for v in levels))
    scored = {**on, "dose": {**on["dose"], "scores": str(tmp_path / "scores.tsv")}}
    with pytest.raises(ValueError, match="dose.scores: sub-02 ses-01 has no PET scan in"):
        planning.dose_patients(scored, sel)
    bad = {**on, "dose": {**on["dose"], "groups": {"low": [levels[0]]}}}  # levels without a group
    with pytest.raises(ValueError, match="group"):
        planning.dose_patients(bad, sel)
    synth = {**default_config, "dose": {**default_config["dose"], "patients": 3}}
    plan = planning.dose_patients(synth, planning.dataset_selection(synth))
    assert plan.pairs == [(p[4:], "01") for p in
                          sorted(planning.dataset_selection(synth).cohort.participant_id)[:3]]
    t1 = {**synth, "dataset": {**synth["dataset"], "modalities": ["T1w"]}}
    assert planning.dose_patients(t1, planning.dataset_selection(t1)).pairs == []


def test_config_problems_across_settings(default_config, tmp_path):
    """What the schema cannot see, each named: PET-only data on the via_t1 route, a crop preset without a
    box, training settings that name other settings or files, a network too deep for its crop."""
    assert planning.config_problems(default_config) == []

    def with_(section, **kw):
        return {**default_config, section: {**default_config[section], **kw}}

    pet_only = with_("dataset", modalities=["pet"])
    pet_only["training"] = {**pet_only["training"], "modalities": ["pet"]}
    assert planning.config_problems(pet_only)[0] == \
        "registration.pet_route via_t1 needs T1w in dataset.modalities; use pet_template for PET-only data"
    assert not any("pet_route" in p for p in planning.config_problems(
        {**pet_only, "registration": {**pet_only["registration"], "pet_route": "pet_template"}}))
    box = with_("crop", preset={"T1w": "nobox", "pet": default_config["crop"]["preset"]["pet"]})
    assert [p for p in planning.config_problems(box) if p.startswith("crop")] == [
        f"crop.preset.T1w = 'nobox' is not one of crop.box {sorted(default_config['crop']['box'])}"]
    t1 = with_("dataset", modalities=["T1w"])
    t1["training"] = {**t1["training"], "modalities": ["pet"]}
    assert "training.modalities ['pet'] are not in dataset.modalities ['T1w']" in planning.config_problems(t1)
    ft = with_("training", finetune_from="CN_vs_DLB", pretrained=str(tmp_path / "none.pt"))
    assert planning.config_problems(ft) == [
        f"training.finetune_from 'CN_vs_DLB' is not one of training.tasks {default_config['training']['tasks']}",
        f"training.pretrained {tmp_path / 'none.pt'}: file not found"]
    deep = with_("training", input_pool=64)
    assert any(p.startswith("training.model on the T1w crop") and "lower training.input_pool" in p
               for p in planning.config_problems(deep))


def test_jobs_of_runs_cover_each_run_once_in_every_mode():
    """heatmaps.job_runs and resources.training_job_runs: which (split, run) pairs one job holds."""
    splits, runs = ["01", "02", "03"], ["01", "02"]
    every = [(s, r) for s in splits for r in runs]
    assert planning.job_runs("unit", splits, runs) == every
    for mode, jobs in (("split", [{"split": s} for s in splits]),
                       ("run", [{"split": s, "run": r} for s, r in every])):
        covered = [pair for job in jobs for pair in planning.job_runs(mode, splits, runs, **job)]
        assert covered == every, mode
    # without a job's values: the wildcards of the rule's outputs
    assert planning.job_runs("split", splits, runs) == [("{split}", "01"), ("{split}", "02")]
    assert planning.job_runs("run", splits, runs) == [("{split}", "{run}")]
    with pytest.raises(ValueError, match="heatmaps.job_runs: 'fold' is none of unit, split, run"):
        planning.job_runs("fold", splits, runs)
    with pytest.raises(ValueError, match="resources.training_job_runs: 'fold' is none of unit, split, run"):
        planning.job_runs("fold", splits, runs, setting="resources.training_job_runs")
    # the schema offers exactly these modes, for both settings
    schema = yaml.safe_load((Path(planning.__file__).parent / "schemas/config.schema.yaml").read_text())
    props = schema["properties"]
    assert tuple(props["heatmaps"]["properties"]["job_runs"]["enum"]) == planning.JOB_RUNS
    assert tuple(props["resources"]["properties"]["training_job_runs"]["enum"]) == planning.JOB_RUNS
    # a job's log carries the wildcards of its outputs
    assert [planning.job_label(m) for m in planning.JOB_RUNS] == ["", "_split-{split}", "_split-{split}_run-{run}"]


def test_heatmap_methods_leave_out_what_a_network_refuses(default_config):
    """LRP needs every activation to feed one layer: the ResNet-18's skip connections refuse it, the 3D
    CNN takes it; the order of heatmaps.methods is kept."""
    cfg = {**default_config, "heatmaps": {**default_config["heatmaps"],
                                          "methods": ["lrp_epsilon", "gradient_x_input", "occlusion"]}}
    cnn = cfg["training"]["model"]
    assert planning.heatmap_network(cfg, cnn) == cnn
    assert planning.heatmap_methods(cfg, cnn) == ["lrpepsilon", "gradientxinput", "occlusion"]
    assert planning.heatmap_network(cfg, "resnet18") == "resnet18"
    assert planning.heatmap_methods(cfg, "resnet18") == ["gradientxinput", "occlusion"]
    assert planning.heatmap_methods(cfg, "resnet18", ["lrp_epsilon"]) == []


def test_split_labels_and_the_sweep_runs_it_reuses(default_config):
    """001's sweep reuses the transfer experiment's runs that it would repeat: pre-training on all of a
    split (the source task's run) and, when its freeze changes nothing, fine-tuning from scratch."""
    cfg = {**default_config, "splits": {**default_config["splits"], "n_splits": 3, "n_repeats": 2}}
    assert planning.split_ids(cfg) == ["01", "02", "03"] and planning.run_ids(cfg) == ["01", "02"]
    model = next(iter(planning.transfer_models(default_config)))
    pre = {**default_config["pretraining"], "model": model, "source_task": "CN_vs_AD", "target_task": "MMSE",
           "freeze": "none"}
    xfer = {**default_config["transfer"], "tasks": ["CN_vs_AD", "MMSE"]}
    cfg = {**default_config, "pretraining": pre, "transfer": xfer}
    assert planning.sweep_reuse(cfg) == (True, True)
    assert planning.sweep_reuse({**cfg, "pretraining": {**pre, "freeze": "head_only"}}) == (True, False)
    assert planning.sweep_reuse({**cfg, "transfer": {**xfer, "tasks": ["MMSE"]}}) == (False, True)
    assert planning.sweep_reuse({**cfg, "pretraining": {**pre, "model": None}}) == (False, False)


def test_every_dose_setting_reaches_a_step(default_config):
    """Each setting of `dose` is read by exactly one per-scan step, or by the parse (patients, sources,
    groups, seeds), the scoring or the regression: none is silently ignored, none reruns two steps."""
    steps = planning.DOSE_STEP_SETTINGS
    per_step = [k for keys in steps.values() for k in keys]
    assert len(per_step) == len(set(per_step))
    elsewhere = {"patients", "total_counts", "events_dir", "groups", "device", "scores", "seed", "training"}
    assert set(per_step) | elsewhere == set(default_config["dose"]) and not set(per_step) & elsewhere
    d = {**default_config["dose"], "angles": 7}
    assert planning.dose_step_settings(d, "resample")["angles"] == 7
    assert "angles" not in planning.dose_step_settings(d, "reconstruct")


def test_heatmap_and_crop_settings_hold_what_reruns_them(default_config):
    """A heatmap job reads its method's settings only (a 2D model's occlusion its mosaic patch); the crop
    reads the boxes of the dataset's modalities only."""
    hm = {**default_config["heatmaps"], "methods": ["occlusion", "gradcam", "gradient_x_input"]}
    cfg = {**default_config, "heatmaps": hm}
    model3d = cfg["training"]["model"]
    mosaic = next(m for m, s in planning.transfer_models(cfg).items() if s["input"] == "mosaic")
    occ3d = planning.heatmap_settings(cfg, model3d, "occlusion")
    assert occ3d == {"target_class": hm["target_class"], "device": cfg["training"]["device"],
                     "occlusion_patch": hm["occlusion_patch"], "occlusion_stride": hm["occlusion_stride"]}
    assert set(planning.heatmap_settings(cfg, mosaic, "occlusion")) == {
        "target_class", "device", "occlusion_patch_2d", "occlusion_stride_2d"}
    assert planning.heatmap_settings(cfg, model3d, "gradcam")["gradcam_layer"] == hm["gradcam_layer"]
    assert set(planning.heatmap_settings(cfg, model3d, "gradientxinput")) == {"target_class", "device"}
    crop = planning.crop_settings(default_config)
    assert set(crop["preset"]) == set(default_config["dataset"]["modalities"])
    assert set(crop["box"]) == set(crop["preset"].values()) < set(default_config["crop"]["box"])
    t1 = {**default_config, "dataset": {**default_config["dataset"], "modalities": ["T1w"]}}
    assert set(planning.crop_settings(t1)["box"]) == {default_config["crop"]["preset"]["T1w"]}
