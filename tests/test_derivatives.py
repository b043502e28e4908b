"""The one path layout (braindl.derivatives): BIDS-derivatives names, one tree for rules, accuracy and benchmarks."""

import itertools

from braindl import derivatives, registration

MODS = ["T1w", "pet"]


def _session(results, sub="001", ses="01", route="via_t1"):
    files = {"scans": derivatives.session_scans(results, sub, ses)}
    files.update({f"extraction:{k}": v for k, v in derivatives.extraction(results, sub, ses, MODS, route).items()})
    for v in registration.VARIANTS:
        for stage, paths in (("registration", derivatives.registration(results, sub, ses, v, MODS, route)),
                             ("skullstrip", derivatives.skullstrip(results, sub, ses, v, MODS)),
                             ("crop", derivatives.crop(results, sub, ses, v, MODS))):
            files.update({f"{stage}:{v}:{k}": p for k, p in paths.items()})
    return files


def test_one_session_in_bids_derivatives_names():
    t = derivatives.SPACE
    assert derivatives.extraction("res", "001", "01", ["T1w", "pet"], "via_t1") == {
        "T1w_mask": "res/extraction/sub-001/ses-01/anat/sub-001_ses-01_desc-brain_mask.nii.gz",
        "T1w_json": "res/extraction/sub-001/ses-01/anat/sub-001_ses-01_desc-brain_mask.json",
        "T1w_preproc": "res/extraction/sub-001/ses-01/anat/sub-001_ses-01_desc-preproc_T1w.nii.gz",
        "pet_mask": "res/extraction/sub-001/ses-01/pet/sub-001_ses-01_desc-brain_mask.nii.gz",
        "pet_json": "res/extraction/sub-001/ses-01/pet/sub-001_ses-01_desc-brain_mask.json",
        "pet_rigid": "res/extraction/sub-001/ses-01/pet/sub-001_ses-01_from-pet_to-T1w_desc-rigid_mode-image_xfm.mat"}
    syn = derivatives.registration("res", "001", "01", "syn", ["T1w", "pet"], "via_t1")
    assert syn["T1w"] == f"res/registration/sub-001/ses-01/anat/sub-001_ses-01_space-{t}_desc-syn_T1w.nii.gz"
    assert syn["T1w_warp"].endswith(f"sub-001_ses-01_from-T1w_to-{t}_desc-syn_mode-image_xfm.nii.gz")
    # via_t1 PET follows the T1w's transforms: none of its own in the aligned variants
    assert "pet_warp" not in syn and "pet_affine" not in derivatives.registration("r", "1", "1", "linear", MODS, "via_t1")
    assert "pet_affine" in derivatives.registration("r", "1", "1", "linear", MODS, "pet_template")
    assert derivatives.registration("r", "1", "1", "none", ["pet"], "via_t1")["pet"].endswith("_space-scanner_desc-none_pet.nii.gz")
    assert derivatives.skullstrip("res", "001", "01", "linear", ["pet"]) == {
        "pet_brain": "res/skullstrip/sub-001/ses-01/pet/sub-001_ses-01_desc-linear_pet.nii.gz",
        "pet_qc": "res/qc/sub-001/ses-01/sub-001_ses-01_desc-linear_pet_qc.png",
        "qc": "res/skullstrip/sub-001/ses-01/sub-001_ses-01_desc-linear_qc.tsv"}
    assert derivatives.crop("res", "001", "01", "none", ["T1w"]) == {
        "T1w": "res/crop/sub-001/ses-01/anat/sub-001_ses-01_desc-none_T1w.nii.gz",
        "T1w_json": "res/crop/sub-001/ses-01/anat/sub-001_ses-01_desc-none_T1w.json"}
    assert derivatives.qc_table("res", "syn") == "res/qc/desc-syn_qc.tsv"
    assert derivatives.modality_sessions("res", "pet") == "res/inputs/desc-pet_sessions.tsv"


def test_no_two_artifacts_share_a_path():
    """Across stages, variants, modalities and sessions every artifact has its own file, inside its
    session's folder of its stage; Snakemake wildcards pass through unchanged."""
    every = {}
    for (sub, ses), route in itertools.product([("001", "01"), ("001", "02"), ("002", "01")], ["via_t1", "pet_template"]):
        for key, path in _session("out", sub, ses, route).items():
            assert f"sub-{sub}/ses-{ses}/" in path and f"sub-{sub}_ses-{ses}_" in path, (key, path)
            assert path.startswith(f"out/{key.split(':')[0] if ':' in key else 'inputs'}/") \
                or key.endswith("_qc"), (key, path)
            every.setdefault(path, set()).add((sub, ses, key))
    assert all(len(keys) == 1 for keys in every.values())
    wild = derivatives.crop("results", "{subject}", "{session}", "{reg}", ["T1w"])
    assert wild["T1w"] == "results/crop/sub-{subject}/ses-{session}/anat/sub-{subject}_ses-{session}_desc-{reg}_T1w.nii.gz"


def test_gathered_artifacts_and_the_runs_four_files():
    assert derivatives.split("res", "CN_vs_AD", "02") == "res/splits/task-CN_vs_AD/task-CN_vs_AD_split-02_split.tsv"
    assert derivatives.pack("res", "syn", "pet") == {"volumes": "res/pack/desc-syn_pet_volumes.npy",
                                                     "index": "res/pack/desc-syn_pet_index.tsv",
                                                     "json": "res/pack/desc-syn_pet_volumes.json"}
    assert derivatives.mosaics("res", "linear", "T1w", "t1small")["mosaics"] == \
        "res/mosaic/desc-linear_T1w_layout-t1small_mosaics.npy"
    run = derivatives.training_run("res", "CN_vs_AD", "T1w", "linear", "01", "02")
    assert run == {k: f"res/training/task-CN_vs_AD/T1w/desc-linear/task-CN_vs_AD_desc-linear_split-01_run-02_{k}.{e}"
                   for k, e in (("model", "pt"), ("history", "tsv"), ("predictions", "tsv"), ("summary", "json"))}
    arm = derivatives.transfer_run("res", "CN_vs_AD", "pet", "syn", "resnet18", "01", "01")
    assert arm["model"] == "res/transfer/task-CN_vs_AD/model-resnet18/task-CN_vs_AD_pet_desc-syn_model-resnet18_split-01_run-01_model.pt"
    assert derivatives.evaluation("res", "sex", "T1w")["comparison"] == "res/evaluation/task-sex/task-sex_T1w_variants.tsv"
    assert derivatives.transfer_comparison("res", "pet", "syn") == "res/transfer/pet_desc-syn_comparison.tsv"
    assert derivatives.transfer_embedding("res", "CN_vs_AD", "pet", "syn", "cnn3d") == \
        "res/transfer/task-CN_vs_AD/model-cnn3d/task-CN_vs_AD_pet_desc-syn_model-cnn3d_embedding.tsv"
    # 001's sweep: a pre-training per training fraction, a fine-tuning per starting point; none shares a file
    pre = derivatives.sweep_run("res", "pretrain", "CN_vs_AD", "pet", "syn", "cnn3d", "050", "01", "01")
    fine = derivatives.sweep_run("res", "finetune", "MMSE", "pet", "syn", "cnn3d", "050", "01", "01")
    scratch = derivatives.sweep_run("res", "finetune", "MMSE", "pet", "syn", "cnn3d", "none", "01", "01")
    assert pre["model"] == "res/pretraining/model-cnn3d/pretrain/task-CN_vs_AD_pet_desc-syn_model-cnn3d_size-050_split-01_run-01_model.pt"
    assert fine["model"].endswith("/finetune/task-MMSE_pet_desc-syn_model-cnn3d_from-050_split-01_run-01_model.pt")
    assert len({*pre.values(), *fine.values(), *scratch.values()}) == 12
    assert derivatives.sweep_split("res", "CN_vs_AD", "050", "02") == \
        "res/pretraining/splits/task-CN_vs_AD_size-050_split-02_split.tsv"
    assert derivatives.sweep_table("res", "MMSE", "pet", "syn", "cnn3d") == \
        "res/pretraining/task-MMSE_pet_desc-syn_model-cnn3d_sweep.tsv"


def test_an_external_datasets_module_and_its_readers_agree():
    """The external dataset's module writes its packs and mosaics through this layout under
    results/external/<name>; braindl.external reads them there, also for a results folder given with a
    trailing slash."""
    from braindl import external, pifstudy

    for results in ("results", "results/"):
        module_root = f"{results}/external/site2"
        assert external.pack_paths(results, "site2", "linear", "T1w") == derivatives.pack(module_root, "linear", "T1w")
        assert external.mosaic_paths(results, "site2", "linear", "T1w", "t1small") == \
            derivatives.mosaics(module_root, "linear", "T1w", "t1small")
        assert external.pack_paths(results, "site2", "linear", "T1w")["volumes"] == \
            "results/external/site2/pack/desc-linear_T1w_volumes.npy"
    study = {"modality": "T1w", "variant": "linear"}
    files = pifstudy.run_paths("res", study, "sex", "pif", "050", "01", "0")
    assert set(files) == {"model", "history", "predictions", "summary"}
    assert files["summary"].endswith("_family-pif_size-050_split-01_sample-0_summary.json")


def test_heatmaps_of_the_workflow_external_data_and_ms_study_share_one_naming():
    """A heatmap unit's files: one naming for the workflow's runs, an external dataset's and the MS study's
    (before, three copies of the same f-strings), each file its own path across runs, methods and kinds."""
    from braindl import external, msstudy

    unit = derivatives.heatmap_unit("res", "CN_vs_AD", "pet", "syn", "resnet18")
    assert unit == "res/heatmaps/task-CN_vs_AD/pet/desc-syn/model-resnet18/task-CN_vs_AD_pet_desc-syn_model-resnet18"
    assert derivatives.heatmap_files(unit, "01", "02", "gradxinput")["heatmaps"] == \
        f"{unit}_split-01_run-02_method-gradxinput_heatmaps.nii.gz"
    assert derivatives.heatmap_regions(unit, "occlusion", "AAL3")["summary"] == \
        f"{unit}_method-occlusion_atlas-AAL3_regionsummary.tsv"
    assert derivatives.heatmap_table(unit, "AAL3", "groundtruth") == f"{unit}_atlas-AAL3_groundtruth.tsv"
    every = [p for s, r, m in itertools.product(["01", "02"], ["01", "02"], ["lrpepsilon", "occlusion"])
             for p in derivatives.heatmap_files(unit, s, r, m).values()]
    every += [p for m in ("lrpepsilon", "occlusion") for p in (*derivatives.heatmap_groups(unit, m).values(),
                                                                *derivatives.heatmap_regions(unit, m, "AAL3").values())]
    every += [derivatives.heatmap_table(unit, "AAL3", k) for k in ("robustness", "robustnesssummary", "groundtruth")]
    assert len(set(every)) == len(every) == 2 * 2 * 2 * 3 + 2 * (5 + 2) + 3

    ext = external.heatmap_paths("res", "site2", "CN_vs_AD", "T1w", "linear", "cnn3d", "01", "01", "lrpepsilon")
    ext_unit = external.heat_prefix("res", "site2", "CN_vs_AD", "T1w", "linear", "cnn3d")
    assert ext_unit == "res/external/site2/heatmaps/task-CN_vs_AD_T1w_desc-linear_model-cnn3d"
    assert ext == derivatives.heatmap_files(ext_unit, "01", "01", "lrpepsilon")
    assert external.region_paths("res", "site2", "CN_vs_AD", "T1w", "linear", "cnn3d", "lrpepsilon", "AAL3") == \
        derivatives.heatmap_regions(ext_unit, "lrpepsilon", "AAL3")
    study = {"modality": "T1w", "variant": "linear", "model": "cnn3d"}
    ms = msstudy.heatmap_paths("res", study, "01", "02")
    assert ms["heatmaps"] == ("res/msstudy/heatmaps/task-CN_vs_MS_T1w_desc-linear_model-cnn3d_arm-finetune"
                              "_split-01_run-02_method-lrpepsilon_heatmaps.nii.gz")
    assert set(ms) == set(ext) == {"heatmaps", "index", "json"}


def test_dose_branch_names_per_scan_level_and_run():
    counts = derivatives.dose_counts("res", "003", "01")
    assert counts["counts"] == "res/dose/sub-003/ses-01/pet/sub-003_ses-01_desc-counts_sinogram.npz"
    recon = {lv: derivatives.dose_reconstruction("res", "003", "01", lv)["pet"] for lv in ("1", "10", "100")}
    assert recon["10"] == "res/dose/sub-003/ses-01/pet/sub-003_ses-01_desc-dose10_pet.nii.gz"
    assert len(set(recon.values())) == 3
    assert derivatives.dose_patches("res", "{subject}", "{session}", "{level}")["patches"] == \
        "res/dose/sub-{subject}/ses-{session}/pet/sub-{subject}_ses-{session}_desc-dose{level}_patches.npy"
    run = derivatives.dose_run("res", "resnet18", "none", "2", "0", "1")
    assert run["summary"] == "res/dose/models/model-resnet18_freeze-none_n-2_fold-0_run-1_summary.json"
    assert {derivatives.dose_scores("res"), derivatives.dose_table("res")} == {"res/dose/quality_scores.tsv",
                                                                                "res/dose/quality_runs.tsv"}


def test_every_figure_in_one_folder_named_for_what_it_shows():
    from braindl import external, msstudy, pifstudy

    study = {"modality": "T1w", "variant": "linear", "model": "cnn3d"}
    figures = [derivatives.variant_figure("res", "CN_vs_AD", "T1w", "roc", "png"),
               derivatives.transfer_figure("res", "CN_vs_AD", "pet", "syn", "metrics", "png"),
               derivatives.transfer_figure("res", "CN_vs_AD", "pet", "syn", "embedding", "png", "resnet18"),
               derivatives.sweep_figure("res", "MMSE", "pet", "syn", "cnn3d", "png"),
               derivatives.heatmap_figure("res", "CN_vs_AD", "T1w", "syn", "cnn3d", "display", "png", "occlusion"),
               derivatives.heatmap_figure("res", "CN_vs_AD", "T1w", "syn", "cnn3d", "robustness", "png"),
               derivatives.dose_figure("res", "levels", "png"),
               pifstudy.figure_path("res", study, "png"), msstudy.figure_path("res", study, "png"),
               external.figure_path("res", "site2", "CN_vs_AD", "T1w", "png")]
    assert all(f.startswith("res/figures/") and f.endswith(".png") and f.count("/") == 2 for f in figures)
    assert len(set(figures)) == len(figures)
    assert figures[2] == "res/figures/transfer_task-CN_vs_AD_pet_desc-syn_model-resnet18_embedding.png"
    assert figures[4] == "res/figures/heatmaps_task-CN_vs_AD_T1w_desc-syn_model-cnn3d_method-occlusion_display.png"
    assert derivatives.dose_figure("res", "levels", "pdf") == "res/figures/dose_levels.pdf"
