"""Registration, skull stripping and cropping checked against the synthetic ground truth."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from braindl import accuracy, qc, registration, synthetic
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

COHORT = {"groups": {"CN": 1, "MCI": 0, "AD": 1, "DLB": 0, "FTLD": 0}, "sessions": [1, 1]}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, default_config):
    root = tmp_path_factory.mktemp("cohort")
    settings = {**default_config["synthetic"], **COHORT}
    synthetic.run_cohort(settings, root / "bids", root / "truth", threads=2, log=lambda msg: None)
    return root, [p[4:] for p in synthetic.cohort_table(settings)["participant_id"]]


def _preprocess(root, sub, config):
    scans = {m: str(synthetic.raw_paths(root / "bids", sub, "01")[m]) for m in ("T1w", "pet")}
    out = root / config["registration"]["pet_route"]
    paths, strip, _ = accuracy.preprocess_session(config, scans, out, sub, "01", threads=2)
    rows = [accuracy.evaluate(paths[v][f"{m}_json"], strip[v][f"{m}_mask"], root / "truth", sub, "01")
            for v in registration.VARIANTS for m in ("T1w", "pet")]
    return paths, rows


@pytest.fixture(scope="module")
def results(cohort, default_config):
    root, subs = cohort
    # one subject per PET route: via the session's T1w, and to the PET template
    out = {}
    for sub, route in zip(subs, ("via_t1", "pet_template")):
        config = {**default_config, "registration": _settings(default_config, route)}
        out[sub] = _preprocess(root, sub, config)
    return out


def test_skull_strip_dice_against_truth(results):
    for sub, (_, rows) in results.items():
        for r in rows:
            assert r["mask_dice"] >= 0.95, (sub, r)


def test_syn_beats_linear_beats_none(results):
    for sub, (_, rows) in results.items():
        for mod in ("T1w", "pet"):
            by = {r["variant"]: r for r in rows if r["modality"] == mod}
            assert by["syn"]["displacement_mm"] < by["linear"]["displacement_mm"] < 3.0, (sub, mod, by)
            assert by["none"]["displacement_mm"] > 5 * by["linear"]["displacement_mm"], (sub, mod, by)
            assert by["syn"]["region_dice"] > by["linear"]["region_dice"] > by["none"]["region_dice"] + 0.3


def test_outputs_live_on_the_template_grid(results, default_config):
    res = default_config["registration"]["resolution_mm"]
    for sub, (paths, _) in results.items():
        for v in registration.VARIANTS:
            img = nib.load(paths[v]["T1w"])
            assert np.allclose(np.abs(np.diag(img.affine))[:3], res)
            meta = json.loads(open(paths[v]["T1w_json"]).read())
            assert meta["Variant"] == v and meta["TemplateToNative"]
            if v != "none":
                assert meta["SimilarityToTemplate"] > 0.8


def test_reproducible_for_fixed_seed(cohort, default_config, tmp_path):
    """Same seed, one ANTs thread: identical transforms and images.

    Each run is a fresh process, as each Snakemake job is: ITK fixes its thread
    count at the first registration of a process.
    """
    root, subs = cohort
    settings = _settings(default_config, "pet_template")
    scans = {"T1w": str(synthetic.raw_paths(root / "bids", subs[0], "01")["T1w"])}
    runs = []
    for k in range(2):
        paths = registration.registration_paths(tmp_path / str(k), subs[0], "01", "linear", ["T1w"], "pet_template")
        code = ("import json, sys; from braindl import registration; a = json.loads(sys.argv[1]); "
                "registration.run_linear(a['settings'], a['scans'], a['paths'], threads=1)")
        subprocess.run([sys.executable, "-c", code, json.dumps(dict(settings=settings, scans=scans, paths=paths))],
                       check=True)
        runs.append(paths)
    assert np.array_equal(read_itk_affine(runs[0]["T1w_affine"]), read_itk_affine(runs[1]["T1w_affine"]))
    assert np.array_equal(nib.load(runs[0]["T1w"]).get_fdata(), nib.load(runs[1]["T1w"]).get_fdata())


def test_noise_scan_is_flagged_not_passed_on(cohort, default_config, tmp_path):
    """A scan of pure noise registers to garbage: QC flags it."""
    root, subs = cohort
    settings = _settings(default_config, "pet_template")
    real = nib.load(str(synthetic.raw_paths(root / "bids", subs[0], "01")["T1w"]))
    noise = np.random.default_rng(3).random(real.shape).astype(np.float32) * 1000
    nib.save(nib.Nifti1Image(noise, real.affine), str(tmp_path / "noise_T1w.nii.gz"))
    paths = registration.registration_paths(tmp_path, "noise", "01", "linear", ["T1w"], "pet_template")
    registration.run_linear(settings, {"T1w": str(tmp_path / "noise_T1w.nii.gz")}, paths, threads=2)
    meta = json.loads(open(paths["T1w_json"]).read())
    rows = [dict(participant_id=f"sub-{i}", session_id="ses-01", modality="T1w", variant="linear",
                 similarity=0.85 + 0.01 * i, mask_volume_ml=1500.0, brain_volume_ml=1500.0 + i,
                 affine_determinant=1.0, registration_seconds=1.0) for i in range(8)]
    rows.append(dict(rows[0], participant_id="sub-noise", similarity=meta["SimilarityToTemplate"],
                     affine_determinant=meta["AffineDeterminant"]))
    import pandas as pd

    table = qc.flag_outliers(pd.DataFrame(rows), default_config["qc"]).set_index("participant_id")
    assert not table.loc["sub-noise", "qc_pass"]
    assert table.drop("sub-noise")["qc_pass"].all()
