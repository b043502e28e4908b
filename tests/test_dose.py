"""Dose resampling (braindl.dose): projector, list-mode thinning, OSEM, the stage's files."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from skimage.transform import radon

from braindl import dose
from braindl.io import write_json, write_nifti


def _disk_phantom(n=33, hot=True):
    c = np.arange(n) - (n - 1) / 2
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    img = (r2 <= (0.35 * n) ** 2).astype(np.float32)
    if hot:
        img[(c[:, None] - 4) ** 2 + (c[None, :] + 3) ** 2 <= 9] = 3.0
        img[(c[:, None] + 5) ** 2 + c[None, :] ** 2 <= 4] = 0.2
    return img


def test_projector_equals_scikit_image_radon():
    n, a = 33, 40
    img = _disk_phantom(n)
    ours = dose.ParallelProjector(n, a).forward(torch.from_numpy(img)[None])[0].numpy()
    # same geometry as radon(circle=True) with the angles counted the other way round
    theirs = radon(img, theta=-np.arange(a) * 180.0 / a, circle=True).T
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.999
    assert abs(ours.sum() / theirs.sum() - 1) < 0.01


def test_back_projection_is_the_exact_adjoint():
    p = dose.ParallelProjector(24, 18, memory_mb=0.01)  # tiny memory: planes in several chunks
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 24, 24, generator=g), torch.rand(5, 18, 24, generator=g)
    lhs, rhs = float((p.forward(x) * y).sum()), float((x * p.back(y)).sum())
    assert abs(lhs - rhs) / abs(lhs) < 1e-5
    sub = np.array([1, 7, 11])
    assert torch.allclose(p.forward(x, sub), p.forward(x)[:, sub], atol=1e-5)


def test_thinning_keeps_poisson_statistics_and_nests_levels():
    rng = np.random.default_rng(1)
    expected = np.full((1, 1, 500), 40.0)
    fractions = [0.05, 0.25, 1.0]
    reps = np.stack([dose.thin(dose.simulated_events(expected, rng, 3000), 500, fractions, rng)[0]
                     for _ in range(120)])  # (reps, levels, bins)
    mean, var = reps.mean((0, 2)), reps.var(0).mean(1)
    np.testing.assert_allclose(mean, 40.0 * np.array(fractions), rtol=0.03)
    np.testing.assert_allclose(var, mean, rtol=0.08)  # variance equals the mean: still Poisson
    assert (np.diff(reps, axis=1) >= 0).all()  # every lower level is a subset of the higher one


def test_per_bin_thinning_has_the_law_of_event_thinning():
    """O(bins) nested binomial draws (simulated data) against thinning the events one by one (list mode):
    the same means and variances (f x lambda: Poisson), the same covariance between two levels (the smaller
    level's mean: nested Poisson), and every level a subset of each larger one."""
    rng = np.random.default_rng(5)
    lam, n_bins, fractions = 30.0, 20000, [0.1, 1.0, 0.4]
    expected = np.full((1, 1, n_bins), lam)
    by_event, n = dose.thin(dose.simulated_events(expected, rng, 100000), n_bins, fractions, rng)
    by_bin = dose.thin_counts(rng.poisson(expected.ravel()), fractions, rng)
    assert n == by_event[1].sum() and by_bin.shape == by_event.shape
    for got in (by_event, by_bin):
        f = np.asarray(fractions)
        np.testing.assert_allclose(got.mean(1), lam * f, rtol=0.02)
        np.testing.assert_allclose(got.var(1), lam * f, rtol=0.05)
        np.testing.assert_allclose(np.cov(got[0], got[2])[0, 1], lam * 0.1, rtol=0.08)
        np.testing.assert_allclose(np.cov(got[2], got[1])[0, 1], lam * 0.4, rtol=0.06)
        assert (got[0] <= got[2]).all() and (got[2] <= got[1]).all()
    np.testing.assert_allclose(by_bin.mean(1), by_event.mean(1), rtol=0.03)
    # the full level is the counts themselves; fractions outside (0, 1] are refused
    counts = np.array([0, 3, 9])
    np.testing.assert_array_equal(dose.thin_counts(counts, [1.0], rng)[0], counts)
    with pytest.raises(dose.DoseError, match="count fractions must lie in"):
        dose.thin_counts(counts, [0.0, 1.0], rng)


def test_thinning_order_of_levels_does_not_matter():
    ev = [np.array([0, 1, 1, 2, 2, 2, 3])]
    a, n = dose.thin(iter(ev), 4, [1.0, 0.5], np.random.default_rng(3))
    b, _ = dose.thin(iter(ev), 4, [0.5, 1.0], np.random.default_rng(3))
    assert n == 7 and a[0].tolist() == [1, 2, 3, 1]
    np.testing.assert_array_equal(a[::-1], b)


def test_osem_of_noiseless_data_approaches_the_phantom():
    n = 33
    img = _disk_phantom(n)
    p = dose.ParallelProjector(n, 42)
    sino = p.forward(torch.from_numpy(np.stack([img, img])))
    inside = _disk_phantom(n, hot=False) > 0
    errs = [float(np.abs(dose.osem(sino, p, it, 7)[0].numpy() - img)[inside].mean() / img[inside].mean())
            for it in (1, 3, 15)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.08


def test_osem_does_not_depend_on_the_projector_chunks():
    """The CPU default processes planes a few at a time (cache-sized chunks, faster); a GPU's large chunks
    hold every plane at once. Planes are independent, so the volumes are the same numbers."""
    n, planes = 96, 9
    assert dose.ParallelProjector(n, 24)._chunk(6) < planes <= dose.ParallelProjector(n, 24, memory_mb=256)._chunk(6)
    g = torch.Generator().manual_seed(1)
    counts = torch.poisson(dose.ParallelProjector(n, 24).forward(torch.rand(planes, n, n, generator=g)) * 20,
                           generator=g).numpy()
    small = dose.reconstruct(counts, 2, 4)  # the CPU default: chunks of 1 MB, 4 planes here
    whole = dose.reconstruct(counts, 2, 4, memory_mb=256)
    assert small.std() > 0
    np.testing.assert_array_equal(small, whole)


def test_noise_in_a_uniform_region_grows_as_counts_fall():
    n = 33
    vol = np.repeat(_disk_phantom(n, hot=False)[:, :, None], 4, axis=2)  # (x, y, z) uniform cylinder
    expected = dose.expected_sinogram(vol, 4e6, 42)
    rng = np.random.default_rng(0)
    counts, _ = dose.thin(dose.simulated_events(expected, rng), expected.size, [0.01, 0.1, 1.0], rng)
    c = np.arange(n) - (n - 1) / 2
    core = (c[:, None] ** 2 + c[None, :] ** 2) <= (0.2 * n) ** 2
    cov = []
    for k in range(3):
        rec = dose.reconstruct(counts[k].reshape(expected.shape), 2, 7)
        vals = rec[:, :, 1:3][core.T]
        cov.append(float(vals.std() / vals.mean()))
    assert cov[0] > cov[1] > cov[2]


def _pet(tmp_path, counts=2e6, sidecar=True):
    vol = np.zeros((30, 36, 10), np.float32)
    vol[6:24, 8:28, 2:8] = 1.0
    vol[10:14, 12:16, 3:6] = 4.0
    aff = np.diag([-2.5, 2.5, 2.5, 1.0])  # LAS: reoriented to RAS
    path = tmp_path / "sub-01_ses-01_pet.nii.gz"
    write_nifti(path, vol, aff)
    if sidecar:
        write_json(tmp_path / "sub-01_ses-01_pet.json", {"TotalCounts": counts})
    return path


SETTINGS = {"levels": [1, 10, 100], "angles": 30, "voxel_size_mm": None, "matrix": None, "iterations": 2,
            "subsets": 5, "postfilter_fwhm_mm": 4.0}


def test_recon_grid_is_square_ras_and_holds_the_activity(tmp_path):
    path = _pet(tmp_path)
    vol, aff, lost = dose.activity_on_grid(path)
    assert vol.shape[0] == vol.shape[1] and aff[0, 0] > 0 and lost < 0.02
    src = nib.load(str(path))
    assert abs(vol.sum() * 2.5**3 - np.asarray(src.dataobj).sum() * 2.5**3) / (np.asarray(src.dataobj).sum() * 2.5**3) < 0.02
    small, _, lost = dose.activity_on_grid(path, matrix=(12, 12, 10))
    assert small.shape == (12, 12, 10) and lost > 0.3
    with pytest.raises(dose.DoseError, match="square"):
        dose.activity_on_grid(path, matrix=(12, 14, 10))


def test_resample_and_reconstruct_write_nested_levels(tmp_path):
    pet = _pet(tmp_path)
    total = dose.total_counts_of(pet, None)
    meta = dose.run_resample(pet, SETTINGS, 7, tmp_path / "c.npz", tmp_path / "c.json", total)
    counts = [meta["CountsPerLevel"][k] for k in ("1", "10", "100")]
    assert counts[0] < counts[1] < counts[2] == meta["Events"]
    assert abs(counts[2] / 2e6 - 1) < 0.01 and abs(counts[1] / counts[2] - 0.1) < 0.01
    with np.load(tmp_path / "c.npz") as z:
        assert (np.diff(z["counts"].astype(np.int64), axis=0) >= 0).all()
    out = dose.run_reconstruct(tmp_path / "c.npz", 10, SETTINGS, tmp_path / "r.nii.gz", tmp_path / "r.json")
    img = nib.load(str(tmp_path / "r.nii.gz"))
    data = img.get_fdata()
    assert data.min() == 0.0 and data.max() == pytest.approx(1.0)
    assert out["Counts"] == counts[1] and out["Iterations"] == 2
    # the hot cube is where it was, in world coordinates
    peak = np.unravel_index(np.argmax(data), data.shape)
    world = img.affine @ np.r_[peak, 1.0]
    src = nib.load(str(pet))
    hot = np.linalg.inv(src.affine) @ world
    assert 8 <= hot[0] <= 16 and 10 <= hot[1] <= 18
    with pytest.raises(dose.DoseError, match="no count level 5"):
        dose.run_reconstruct(tmp_path / "c.npz", 5, SETTINGS, tmp_path / "x.nii.gz", tmp_path / "x.json")
    assert not (tmp_path / "x.nii.gz").exists()
    # every level of the scan in one job: the same images; a missing level is refused before any is written
    outs = {lv: (tmp_path / f"all{lv}.nii.gz", tmp_path / f"all{lv}.json") for lv in (1.0, 10.0, 100.0)}
    metas = dose.run_reconstructions(tmp_path / "c.npz", SETTINGS, outs)
    assert [m["Counts"] for m in metas] == counts
    np.testing.assert_array_equal(nib.load(str(outs[10.0][0])).get_fdata(), data)
    with pytest.raises(dose.DoseError, match="no count level 5, 20"):
        dose.run_reconstructions(tmp_path / "c.npz", SETTINGS, {1.0: (tmp_path / "y1.nii.gz", tmp_path / "y1.json"),
                                                                5.0: (tmp_path / "y.nii.gz", tmp_path / "y.json"),
                                                                20.0: (tmp_path / "z.nii.gz", tmp_path / "z.json")})
    assert not (tmp_path / "y1.nii.gz").exists()
    # one job for the scan (rule dose_reconstruct): the same seeded counts and the same images; the PET
    # sidecar's TotalCounts when none is configured; a level the resampling does not make is refused first
    scan_outs = {lv: (tmp_path / f"scan{lv}.nii.gz", tmp_path / f"scan{lv}.json") for lv in (1.0, 10.0, 100.0)}
    scan_counts = {"counts": tmp_path / "s.npz", "json": tmp_path / "s.json"}
    scan = dose.run_scan(pet, SETTINGS, SETTINGS, 7, scan_counts, scan_outs)
    assert scan["CountsPerLevel"] == meta["CountsPerLevel"] and scan["TotalCounts"] == total
    with np.load(tmp_path / "s.npz") as a, np.load(tmp_path / "c.npz") as b:
        np.testing.assert_array_equal(a["counts"], b["counts"])
    for lv, (nii, _) in scan_outs.items():
        np.testing.assert_array_equal(nib.load(str(nii)).get_fdata(), nib.load(str(outs[lv][0])).get_fdata())
    with pytest.raises(dose.DoseError, match=r"reconstructions of count levels \[5.0\] that dose.levels"):
        dose.run_scan(pet, SETTINGS, SETTINGS, 7, {"counts": tmp_path / "n.npz", "json": tmp_path / "n.json"},
                      {5.0: (tmp_path / "n5.nii.gz", tmp_path / "n5.json")})
    assert not (tmp_path / "n.npz").exists()


def test_user_events_are_thinned_like_simulated_ones(tmp_path):
    shape, aff = (2, 6, 8), np.eye(4)
    ev = np.repeat(np.arange(96), 50)
    dose.write_events(tmp_path / "sub-01_ses-01_events.npy", [ev], shape, aff)
    meta = dose.run_resample(tmp_path / "sub-01_ses-01_events.npy", {"levels": [50, 100]}, 0,
                             tmp_path / "c.npz", tmp_path / "c.json")
    assert meta["Events"] == 4800 and meta["CountsPerLevel"]["100"] == 4800 and not meta["Simulated"]
    assert abs(meta["CountsPerLevel"]["50"] - 2400) < 4 * np.sqrt(1200)
    with np.load(tmp_path / "c.npz") as z:
        assert z["counts"].shape == (2, *shape) and (z["counts"][1] == 50).all()


def test_bad_events_and_counts_are_refused_with_the_file_named(tmp_path):
    bad = tmp_path / "sub-02_ses-01_events.npy"
    dose.write_events(bad, [np.array([0, 5, 999])], (1, 2, 3), np.eye(4))
    with pytest.raises(dose.DoseError, match="sub-02_ses-01_events.npy: bin indices outside"):
        dose.read_events(bad)
    lonely = tmp_path / "sub-03_ses-01_events.npy"
    np.save(lonely, np.arange(3))
    with pytest.raises(dose.DoseError, match="sidecar"):
        dose.read_events(lonely)
    json_only = tmp_path / "sub-04_ses-01_events.npy"
    np.save(json_only, np.linspace(0, 1, 3))
    (tmp_path / "sub-04_ses-01_events.json").write_text(json.dumps({"SinogramShape": [1, 1, 3], "Affine": np.eye(4).tolist()}))
    with pytest.raises(dose.DoseError, match="integer"):
        dose.read_events(json_only)
    (tmp_path / "x").mkdir()
    pet = _pet(tmp_path / "x", sidecar=False)
    with pytest.raises(dose.DoseError, match="TotalCounts"):
        dose.total_counts_of(pet, None)
    assert dose.total_counts_of(pet, 5e5) == 5e5


def test_level_labels_are_bids_safe():
    assert [dose.level_label(v) for v in (0.5, 1, 10.0, 100)] == ["0p5", "1", "10", "100"]
