"""Registration, skull stripping and cropping checked against the synthetic ground truth."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from braindl import accuracy, derivatives, extraction, qc, registration, synthetic, templates
from braindl.io import read_itk_affine, write_itk_affine


def _settings(default_config, route):
    return {**default_config["registration"], "pet_route": route}


# --- geometry helpers -------------------------------------------------------


def test_itk_affine_round_trip(tmp_path):
    m = np.array([[0.9, 0.1, 0.0, 3.0], [-0.1, 1.1, 0.2, -4.0], [0.0, -0.2, 1.0, 5.0], [0, 0, 0, 1]])
    write_itk_affine(tmp_path / "x.mat", m)
    assert np.allclose(read_itk_affine(tmp_path / "x.mat"), m)


def test_to_ants_matches_ants_reader(tmp_path):
    import ants

    aff = np.array([[0, 0, -1.2, 90], [-1.1, 0, 0, 100], [0, 1.3, 0, -80], [0, 0, 0, 1]])
    data = np.random.default_rng(0).random((7, 8, 9)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, aff), str(tmp_path / "x.nii.gz"))
    ref = ants.image_read(str(tmp_path / "x.nii.gz"))
    ours = registration.to_ants(data, aff)
    assert np.allclose(ours.origin, ref.origin, atol=1e-4) and np.allclose(ours.direction, ref.direction)
    assert np.allclose(ours.spacing, ref.spacing) and np.allclose(ours.numpy(), ref.numpy())
    _, back = registration.from_ants(ours)
    assert np.allclose(back, aff, atol=1e-5)


def test_none_affine_reorients_scales_and_centres():
    grid = np.diag([2.0, 2.0, 2.0, 1.0])
    grid[:3, 3] = [-98, -134, -72]
    grid_shape = (99, 117, 95)
    # LPS-stored scan, 1.25 mm voxels, off-centre
    native = np.array([[-1.25, 0, 0, 120.0], [0, -1.25, 0, 90.0], [0, 0, 1.25, -60.0], [0, 0, 0, 1]])
    shape = (160, 190, 150)
    m = registration.none_affine(native, shape, grid, grid_shape)
    centre_grid = grid @ np.r_[(np.array(grid_shape) - 1) / 2, 1]
    centre_native = native @ np.r_[(np.array(shape) - 1) / 2, 1]
    assert np.allclose(m @ centre_grid, centre_native)
    # one template mm is one native mm along the reoriented axes: (R, A, S) -> (R, A, S)
    assert np.allclose(m[:3, :3], np.eye(3))
    # a rotated header (PIR storage) is reoriented, not aligned
    pir = np.array([[0, 0, -1.0, 80], [-1.0, 0, 0, 100], [0, -1.0, 0, 90], [0, 0, 0, 1]])
    m2 = registration.none_affine(pir, (200, 220, 180), grid, grid_shape)
    assert np.allclose(np.abs(m2[:3, :3]), np.eye(3))


def test_chain_lists_invert_and_reverse(tmp_path):
    chain = [{"warp": "w.nii.gz", "inverse_warp": "iw.nii.gz"}, {"affine": "a.mat"}, {"affine": "../anat/r.mat"}]
    files, inv = registration.to_native_list(chain, tmp_path / "pet")
    assert [f.split("/")[-1] for f in files] == ["w.nii.gz", "a.mat", "r.mat"] and inv == [False] * 3
    assert files[2] == str((tmp_path / "anat" / "r.mat").resolve())
    files, inv = registration.to_template_list(chain, tmp_path / "pet")
    assert [f.split("/")[-1] for f in files] == ["r.mat", "a.mat", "iw.nii.gz"] and inv == [True, True, False]


def test_empty_result_is_an_error_naming_the_scan():
    with pytest.raises(registration.RegistrationError, match="scan.nii.gz: linear registration produced an empty"):
        registration._check_registered(np.zeros((3, 3, 3)), "scan.nii.gz", "linear")


# --- against the ground truth ---------------------------------------------------
# Three cohorts, so that the checks hold beyond the project's own generator's defaults:
# the synthetic cohort (pose, head, nonlinear anatomy warp, atrophy), the same generator with
# the warp and the disease's volume loss off (affine truth), and heads made by tests/posed_heads.py
# (the template through a random affine, another skull, no warp).

WARPED = {"groups": {"CN": 0, "MCI": 0, "AD": 1, "DLB": 0, "FTLD": 0}, "sessions": [1, 1]}
AFFINE = {"groups": {"CN": 1, "MCI": 0, "AD": 0, "DLB": 0, "FTLD": 0}, "sessions": [1, 1], "warp_mm": 0.0,
          "volume_loss": 0.0, "seed": 7}
VARIANTS = registration.VARIANTS


def _synthetic_session(root, default_config, cohort, route):
    settings = {**default_config["synthetic"], **cohort}
    synthetic.run_cohort(settings, root / "bids", root / "truth", threads=2, log=lambda msg: None)
    sub = synthetic.cohort_table(settings)["participant_id"].iloc[0][4:]
    config = {**default_config, "registration": _settings(default_config, route)}
    scans = {m: str(synthetic.raw_paths(root / "bids", sub, "01")[m]) for m in ("T1w", "pet")}
    ext, paths, strip, _ = accuracy.preprocess_session(config, scans, root / "out", sub, "01", threads=2)
    rows = {(r["variant"], r["modality"]): r for r in
            (accuracy.evaluate(paths[v][f"{m}_json"], paths[v][f"{m}_mask"], root / "truth", sub, "01",
                               ext[f"{m}_mask"]) for v in VARIANTS for m in ("T1w", "pet"))}
    return dict(ext=ext, paths=paths, strip=strip, rows=rows, scans=scans, sub=sub, config=config)


@pytest.fixture(scope="module")
def warped(tmp_path_factory, default_config):
    """An AD subject of the default generator (warp, atrophy), PET via its T1w."""
    return _synthetic_session(tmp_path_factory.mktemp("warped"), default_config, WARPED, "via_t1")


@pytest.fixture(scope="module")
def affine_truth(tmp_path_factory, default_config):
    """A control with an affine-only truth, PET on the PET-only route (its own template)."""
    return _synthetic_session(tmp_path_factory.mktemp("affine"), default_config, AFFINE, "pet_template")


@pytest.fixture(scope="module")
def posed(tmp_path_factory, default_config):
    """Two heads the project's generator did not make, T1w only, every variant."""
    import posed_heads

    root = tmp_path_factory.mktemp("posed")
    model = posed_heads.head_model()
    out = []
    for seed in (11, 12):
        head = posed_heads.posed_head(root, f"h{seed}", seed, model)
        ext, paths, strip, _ = accuracy.preprocess_session(default_config, {"T1w": head["T1w"]}, root / f"out{seed}",
                                                           f"h{seed}", "01", threads=2)
        out.append(dict(head=head, ext=ext, paths=paths, strip=strip, sub=f"h{seed}"))
    return out


def _native_dice(ext_mask, truth_mask):
    return accuracy.dice(np.asarray(nib.load(str(ext_mask)).dataobj) > 0, np.asarray(nib.load(str(truth_mask)).dataobj) > 0)


@pytest.mark.slow
def test_native_masks_against_truth(warped, affine_truth, posed):
    """One native mask per scan, Dice >= 0.97 with the truth on every scan of every cohort."""
    for case in (warped, affine_truth):
        for (v, m), r in case["rows"].items():
            assert r["native_mask_dice"] >= 0.97, (case["sub"], v, m, r)
    for case in posed:
        assert _native_dice(case["ext"]["T1w_mask"], case["head"]["mask"]) >= 0.97, case["sub"]


@pytest.mark.slow
def test_every_variant_carries_the_same_native_mask(warped, affine_truth, posed):
    """Each variant's mask, mapped back to the native scan through its own chain, is the native mask."""
    for case in (warped, affine_truth, *posed):
        for m in [k for k in ("T1w", "pet") if f"{k}_mask" in case["ext"]]:
            native = registration.load_scan(case["ext"][f"{m}_mask"])
            for v in VARIANTS:
                files, invert = registration.to_template_list(*registration.read_chain(case["paths"][v][f"{m}_json"]))
                back = registration.apply_chain(native, registration.load_scan(case["paths"][v][f"{m}_mask"]),
                                                files, invert, "linear").numpy() > 0.5
                assert accuracy.dice(back, native.numpy() > 0) >= 0.95, (case["sub"], v, m)


@pytest.mark.slow
def test_warped_truth_syn_beats_linear_beats_none(warped):
    for mod in ("T1w", "pet"):
        by = {v: warped["rows"][(v, mod)] for v in VARIANTS}
        assert by["syn"]["displacement_mm"] < by["linear"]["displacement_mm"] < 3.0, (mod, by)
        assert by["none"]["displacement_mm"] > 5 * by["linear"]["displacement_mm"], (mod, by)
        assert by["syn"]["region_dice"] > by["linear"]["region_dice"] > by["none"]["region_dice"] + 0.3


@pytest.mark.slow
def test_affine_truth_syn_invents_no_deformation(affine_truth, posed):
    """Where the truth is affine, SyN's mean error stays within 0.3 mm of linear's, p95 <= 1.5 mm."""
    import posed_heads

    errors = [{v: (affine_truth["rows"][(v, m)]["displacement_mm"], affine_truth["rows"][(v, m)]["displacement_p95_mm"])
               for v in ("linear", "syn")} for m in ("T1w", "pet")]
    for case in posed:
        d = {v: posed_heads.displacement(case["paths"][v]["T1w_json"], case["head"]["pose"], 2.0)
             for v in ("linear", "syn")}
        errors.append({v: (float(e.mean()), float(np.percentile(e, 95))) for v, e in d.items()})
    for e in errors:
        assert e["linear"][0] < 0.5, e
        assert e["syn"][0] <= e["linear"][0] + 0.3 and e["syn"][1] <= 1.5, e


@pytest.mark.slow
def test_syn_jacobian_is_recorded_and_near_one_without_deformation(affine_truth, warped):
    flat = json.loads(open(affine_truth["paths"]["syn"]["T1w_json"]).read())
    warp = json.loads(open(warped["paths"]["syn"]["T1w_json"]).read())
    assert 0.8 < flat["JacobianP01"] <= flat["JacobianP99"] < 1.25, flat
    # the warped anatomy needs a wider spread of local volume change than the affine one
    assert warp["JacobianP99"] - warp["JacobianP01"] > flat["JacobianP99"] - flat["JacobianP01"]


@pytest.mark.slow
def test_none_keeps_the_scanners_world(warped, posed):
    """The none image's header is its true voxel-to-world map: resampling the native scan at its voxels'
    world positions gives the none image; it is not labelled as template space."""
    for case, m in ((warped, "T1w"), (warped, "pet"), (posed[0], "T1w")):
        img = nib.load(case["paths"]["none"][m])
        meta = json.loads(open(case["paths"]["none"][f"{m}_json"]).read())
        assert meta["Space"] == "scanner" and meta["InTemplateSpace"] is False and meta["SimilarityToTemplate"] is None
        assert "space-scanner" in case["paths"]["none"][m] and "to-MNI" not in case["paths"]["none"][f"{m}_affine"]
        native = nib.load(meta["Source"])
        affine, shape = registration.none_grid(native.affine, native.shape, 2.0)
        assert np.allclose(img.affine, affine, atol=1e-4) and img.shape == shape
        # sample the native scan at the none voxels' world coordinates (scipy, independent of ANTs)
        from scipy import ndimage

        idx = np.argwhere(np.asarray(img.dataobj) > 0)[::97]
        world = idx @ img.affine[:3, :3].T + img.affine[:3, 3]
        vox = (world - native.affine[:3, 3]) @ np.linalg.inv(native.affine[:3, :3]).T
        ref = ndimage.map_coordinates(np.asarray(native.dataobj, np.float32), vox.T, order=1)
        got = np.asarray(img.dataobj)[tuple(idx.T)]
        assert np.corrcoef(ref, got)[0, 1] > 0.98
        # the aligned variants do sit on the template grid
        assert np.allclose(nib.load(case["paths"]["linear"][m]).affine, templates.load_template(2.0).affine)


@pytest.mark.slow
def test_n4_removes_a_bias_field_it_did_not_make(tmp_path, default_config):
    """A posed head with a known +-15 % bias gradient and its bias-free twin: after N4 (inside the true
    brain mask, the workflow's settings) they differ far less than before."""
    import posed_heads

    check = posed_heads.N4Check(*posed_heads.bias_twins(tmp_path, 5, posed_heads.head_model()))
    got = check.measure(lambda scan, mask: extraction.n4(scan, mask, default_config["skullstrip"]))
    before, after = got["before"], got["residual"]
    assert before > 0.03 and after < 0.25 * before, (before, after)


@pytest.mark.slow
def test_reproducible_for_fixed_seed(affine_truth, tmp_path):
    """Same seed, one ANTs thread: identical transforms and images.

    Each run is a fresh process, as each Snakemake job is: ITK fixes its thread
    count at the first registration of a process.
    """
    # fewer iterations than config.yaml's: the metric's random sampling is drawn at every level all the same
    settings = {**affine_truth["config"]["registration"], "affine_iterations": [200, 100, 0, 0]}
    native = extraction.registration_inputs(affine_truth["ext"], {"T1w": affine_truth["scans"]["T1w"]})
    runs = []
    for k in range(2):
        paths = derivatives.registration(tmp_path / str(k), "x", "01", "linear", ["T1w"], "pet_template")
        code = ("import json, sys; from braindl import registration; a = json.loads(sys.argv[1]); "
                "registration.run_linear(a['settings'], a['native'], a['paths'], threads=1)")
        subprocess.run([sys.executable, "-c", code, json.dumps(dict(settings=settings, native=native, paths=paths))],
                       check=True)
        runs.append(paths)
    assert np.array_equal(read_itk_affine(runs[0]["T1w_affine"]), read_itk_affine(runs[1]["T1w_affine"]))
    assert np.array_equal(nib.load(runs[0]["T1w"]).get_fdata(), nib.load(runs[1]["T1w"]).get_fdata())


@pytest.mark.slow
def test_bad_scans_stop_extraction_or_are_flagged_by_qc(affine_truth, posed, default_config, tmp_path):
    """A small dataset (3 good heads and a bad scan): a blank or noise T1w stops its extraction naming
    the file; a PET filed as T1w gets a plausible mask but QC flags its registration; the good scans pass."""
    import pandas as pd

    import posed_heads

    ref = nib.load(posed[0]["head"]["T1w"])
    for name, data in (("blank", np.zeros(ref.shape, np.float32)),
                       ("noise", np.random.default_rng(3).random(ref.shape).astype(np.float32) * 1000)):
        path = tmp_path / f"{name}_T1w.nii.gz"
        nib.save(nib.Nifti1Image(data, ref.affine), str(path))
        ext = derivatives.extraction(tmp_path / name, name, "01", ["T1w"], "via_t1")
        with pytest.raises(extraction.ExtractionError, match=f"{name}_T1w.nii.gz: "):
            extraction.run_extraction(default_config["skullstrip"], default_config["registration"],
                                      {"T1w": str(path)}, ext, threads=2)
    bad = accuracy.preprocess_session(default_config, {"T1w": affine_truth["scans"]["pet"]}, tmp_path / "bad",
                                      "bad", "01", threads=2)
    rows = [pd.read_csv(bad[2][v]["qc"], sep="\t") for v in VARIANTS]
    rows += [pd.read_csv(c["strip"][v]["qc"], sep="\t") for c in posed for v in VARIANTS]
    rows += [pd.read_csv(affine_truth["strip"][v]["qc"], sep="\t").query("modality == 'T1w'") for v in VARIANTS]
    table = pd.concat(rows, ignore_index=True).assign(diagnosis="CN")
    flagged = qc.scan_table(qc.flag_outliers(table, default_config["qc"])).set_index("participant_id")
    assert not flagged.loc["sub-bad", "qc_pass"], flagged
    assert "below 0.5 (registration failed)" in flagged.loc["sub-bad", "qc_reasons"]
    assert flagged.drop("sub-bad")["qc_pass"].all(), flagged


@pytest.mark.slow
def test_registration_fallback_extracts_a_head_it_did_not_make(default_config, tmp_path):
    """skullstrip.method registration (no deepbet): the template mask through the inverse of a registration,
    on a posed head: Dice >= 0.95 with its true mask, and the same outputs as deepbet's route."""
    import posed_heads

    head = posed_heads.posed_head(tmp_path, "fb", 11)
    ext = derivatives.extraction(tmp_path / "ext", "fb", "01", ["T1w"], "via_t1")
    extraction.run_extraction({**default_config["skullstrip"], "method": "registration"},
                              default_config["registration"], {"T1w": head["T1w"]}, ext, threads=2)
    assert _native_dice(ext["T1w_mask"], head["mask"]) >= 0.95
    meta = json.loads(open(ext["T1w_json"]).read())
    assert meta["Method"] == "registration" and meta["BiasCorrected"] and 900 < meta["BrainVolumeML"] < 2600
    assert nib.load(ext["T1w_preproc"]).shape == head["shape"]
