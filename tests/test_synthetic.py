"""Synthetic cohort: counts, determinism, header variety and ground-truth consistency."""

import copy
import json

import ants
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from braindl import synthetic, templates


@pytest.fixture(scope="module")
def small(default_config, tmp_path_factory):
    settings = copy.deepcopy(default_config["synthetic"])
    settings["groups"] = {"CN": 1, "AD": 1, "DLB": 1}
    settings["sessions"] = [2, 2]
    root = tmp_path_factory.mktemp("syn")
    import torch

    before = torch.get_num_threads()
    synthetic.run_cohort(settings, root / "bids", root / "truth", threads=2, log=lambda msg: None)
    assert torch.get_num_threads() == before  # one torch thread per session, then restored
    model = synthetic.build_model(settings)
    weights = {dx: synthetic.disease_weights(model, settings, dx) for dx in settings["groups"]}
    table = synthetic.cohort_table(settings)
    return dict(settings=settings, model=model, weights=weights, table=table, root=root)


def test_cohort_counts_and_determinism(default_config):
    s = default_config["synthetic"]
    t1, t2 = synthetic.cohort_table(s), synthetic.cohort_table(s)
    assert t1.equals(t2)
    assert t1["diagnosis"].value_counts().to_dict() == {k: v for k, v in s["groups"].items() if v}
    assert t1["participant_id"].is_unique
    lo, hi = s["sessions"]
    assert t1["n_sessions"].between(lo, hi).all()
    assert set(t1["n_sessions"]) == set(range(lo, hi + 1))
    assert (t1.loc[t1.diagnosis == "CN", "severity"] == 0).all()
    assert (t1.loc[t1.diagnosis == "AD", "severity"] > 0).all()
    assert t1.groupby("diagnosis")["mmse"].mean()["AD"] < t1.groupby("diagnosis")["mmse"].mean()["CN"]
    other = dict(s, seed=s["seed"] + 1)
    assert not synthetic.cohort_table(other)[["age", "n_sessions"]].equals(t1[["age", "n_sessions"]])


def test_bids_layout_and_sidecars(small):
    root = small["root"]
    for row in small["table"].itertuples():
        sub = row.participant_id[4:]
        sessions = (root / "bids" / row.participant_id / f"{row.participant_id}_sessions.tsv").read_text()
        assert sessions.count("ses-") == 2
        for ses in ("01", "02"):
            raw = synthetic.raw_paths(root / "bids", sub, ses)
            for key in ("T1w", "pet", "T1w_json", "pet_json"):
                assert raw[key].is_file()
            side = json.loads(raw["pet_json"].read_text())
            assert side["TotalCounts"] == small["settings"]["pet_total_counts"]
            assert side["Units"] == "Bq/mL"
    assert (root / "bids" / "participants.tsv").read_text().count("sub-") == 3
    # template-space truth per diagnosis: the effect regions on the unpadded template grid
    tpl = templates.load_template(1.0)
    pad = int(small["model"]["pad"])
    for dx, w in small["weights"].items():
        for effect in ("atrophy", "hypometabolism"):
            img = nib.load(str(root / "truth" / f"tpl-{synthetic.SPACE}_dx-{dx}_desc-{effect}_mask.nii.gz"))
            np.testing.assert_allclose(img.affine, tpl.affine)
            crop = tuple(slice(pad, -pad) for _ in range(3))
            np.testing.assert_array_equal(np.asarray(img.dataobj), w[f"{effect}_mask"][crop])


def test_header_variety(small):
    orients, sizes, shapes = set(), set(), set()
    for row in small["table"].itertuples():
        for ses in ("01", "02"):
            for mod in ("T1w", "pet"):
                img = nib.load(str(synthetic.raw_paths(small["root"] / "bids", row.participant_id[4:], ses)[mod]))
                orients.add(nib.aff2axcodes(img.affine))
                sizes.add(tuple(np.round(img.header.get_zooms(), 3)))
                shapes.add(img.shape)
                zooms = np.array(img.header.get_zooms())
                if mod == "T1w":
                    assert zooms.min() >= 1.0 - 1e-3 and zooms.max() <= 1.3 + 1e-3
    assert len(orients) >= 3 and len(sizes) == 12 and len(shapes) == 12


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_ground_truth_transforms_map_masks_onto_template(small, tmp_path):
    tpl = templates.load_template(1.0)
    tpl_path = tmp_path / "tpl_mask.nii.gz"
    nib.save(nib.Nifti1Image(tpl.brain_mask.astype(np.float32), tpl.affine), str(tpl_path))
    fixed = ants.image_read(str(tpl_path))
    truth = small["root"] / "truth"
    for row in small["table"].itertuples():
        sub = row.participant_id[4:]
        for ses in ("01", "02"):
            paths = synthetic.truth_paths(truth, sub, ses)
            for mod in ("T1w", "pet"):
                native = ants.image_read(str(paths[f"{mod}_brainmask"])).astype("float32")
                tl, inv = synthetic.truth_transformlist(truth, sub, ses, mod, to_template=True)
                warped = ants.apply_transforms(fixed, native, tl, whichtoinvert=inv, interpolator="linear")
                d = _dice(warped.numpy() > 0.5, tpl.brain_mask > 0)
                assert d >= 0.98, (sub, ses, mod, d)
                tl, inv = synthetic.truth_transformlist(truth, sub, ses, mod, to_template=False)
                back = ants.apply_transforms(native, fixed, tl, whichtoinvert=inv, interpolator="linear")
                assert _dice(back.numpy() > 0.5, native.numpy() > 0.5) >= 0.98


def test_generation_is_deterministic(small, tmp_path):
    """A session generated on its own equals the one the threaded cohort run wrote."""
    s, row = small["settings"], small["table"].iloc[1]
    sub = row.participant_id[4:]
    synthetic.generate_session(s, small["model"], small["weights"][row.diagnosis], sub, "02",
                               tmp_path / "bids", tmp_path / "truth")
    for key in ("T1w", "pet"):
        a = nib.load(str(synthetic.raw_paths(small["root"] / "bids", sub, "02")[key]))
        b = nib.load(str(synthetic.raw_paths(tmp_path / "bids", sub, "02")[key]))
        np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
        np.testing.assert_array_equal(a.affine, b.affine)
    for key in ("anat_to_tpl_warp", "T1w_labels"):
        a = synthetic.truth_paths(small["root"] / "truth", sub, "02")[key]
        b = synthetic.truth_paths(tmp_path / "truth", sub, "02")[key]
        np.testing.assert_array_equal(np.asarray(nib.load(str(a)).dataobj), np.asarray(nib.load(str(b)).dataobj))


def test_disease_effects_follow_the_truth(small):
    root, s = small["root"], small["settings"]
    table = small["table"].set_index("diagnosis")
    cn, ad, dlb = (table.loc[dx, "participant_id"][4:] for dx in ("CN", "AD", "DLB"))
    # truth masks: CN none, AD atrophy + hypometabolism, DLB hypometabolism only
    mask = lambda sub, mod: np.asarray(  # noqa: E731
        nib.load(str(synthetic.truth_paths(root / "truth", sub, "01")[f"{mod}_altered"])).dataobj)
    assert mask(cn, "T1w").sum() == 0 and mask(cn, "pet").sum() == 0
    assert mask(ad, "T1w").sum() > 1000 and mask(ad, "pet").sum() > 100
    assert mask(dlb, "T1w").sum() == 0 and mask(dlb, "pet").sum() > 100
    # PET uptake in the AD hypometabolism regions, relative to the brain, is lower in AD than in CN
    ad_idx = templates.region_indices(s["patterns"]["AD"]["hypometabolism"])

    def ratio(sub):
        p = synthetic.truth_paths(root / "truth", sub, "01")
        img = np.asarray(nib.load(str(synthetic.raw_paths(root / "bids", sub, "01")["pet"])).dataobj, float)
        lab = np.asarray(nib.load(str(p["pet_labels"])).dataobj)
        return img[np.isin(lab, ad_idx)].mean() / img[lab > 0].mean()

    assert ratio(ad) < ratio(cn) - 0.03
    # template-space truth per diagnosis
    assert small["weights"]["AD"]["atrophy_mask"].sum() > 1000
    assert small["weights"]["CN"]["atrophy_mask"].sum() == 0


def _grid_sample_coords(vol_affine, dims, pts):
    """``torch.grid_sample`` coordinates (align_corners; z, y, x order) of world points
    (N, 3) in a volume of shape ``dims`` with voxel-to-world ``vol_affine``."""
    dims = np.asarray(dims, dtype=np.float64)
    inv = np.linalg.inv(vol_affine)
    scale = 2.0 / np.maximum(dims - 1, 1)
    vox = pts @ inv[:3, :3].T + inv[:3, 3]
    return ((scale * vox - 1.0)[:, ::-1]).astype(np.float32)


def _torch_field_at(u, grid_affine, pts):
    """Reference for ``synthetic._field_at``: ``grid_sample`` with border padding."""
    import torch
    import torch.nn.functional as F

    grid = torch.from_numpy(np.ascontiguousarray(_grid_sample_coords(grid_affine, u.shape[:3], pts)))
    vol = torch.from_numpy(np.ascontiguousarray(np.moveaxis(u, -1, 0), np.float32))[None]
    out = F.grid_sample(vol, grid.view(1, 1, 1, -1, 3), padding_mode="border", align_corners=True)
    return out.view(u.shape[-1], -1).numpy().T


def test_field_lookup_matches_torch_grid_sample(small):
    """The compiled warp lookup equals ``grid_sample`` with border padding, also for
    points beyond the field's grid, and the inverse warp it computes undoes the warp."""
    s, model, w = small["settings"], small["model"], small["weights"]["AD"]
    geom = synthetic.session_geometry(s, model, w, 1, 0, 1.0)
    u, aff = geom["u"], geom["grid_affine"]
    lo, hi = aff[:3, 3], aff[:3, 3] + (np.array(u.shape[:3]) - 1) * aff[0, 0]
    pts = np.random.default_rng(0).uniform(lo - 30, hi + 30, (5000, 3))  # some outside the grid
    assert ((pts < lo) | (pts > hi)).any(1).mean() > 0.2
    np.testing.assert_allclose(synthetic._field_at(u, aff, pts), _torch_field_at(u, aff, pts), atol=1e-4)
    q = synthetic._grid_world(aff, u.shape[:3]).reshape(-1, 3)
    inner = np.all((q > lo + 20) & (q < hi - 20), axis=1)  # away from the border padding
    v = geom["v"].reshape(-1, 3)[inner]
    residual = v + _torch_field_at(u, aff, q[inner] + v)  # v(q) = -u(q + v(q))
    assert np.abs(residual).max() < 1e-3


def test_native_sampling_matches_torch_grid_sample(small):
    """The one-pass sampler equals ``torch.grid_sample`` (trilinear image, nearest
    labels, zero padding) on the same template coordinates, for a T1w and a PET grid,
    including voxels whose coordinates fall outside the model."""
    import torch
    import torch.nn.functional as F

    s, model, w = small["settings"], small["model"], small["weights"]["AD"]
    volumes = synthetic.sampling_volumes(model, w)
    geom = synthetic.session_geometry(s, model, w, 1, 0, 1.0)
    for k, modality in enumerate(synthetic.MODALITIES):
        rng = np.random.default_rng(k)
        pose = synthetic._pose(rng, s, geom["scale"])
        affine, shape, _ = synthetic._native_grid(rng, s, modality, pose, model["head_points"])
        affine[:3, 3] -= 40.0  # shift the field of view so part of it lies outside the model grid
        to_tpl = np.linalg.inv(pose) @ affine
        image, code = synthetic.sample_native(volumes[modality][0], volumes["code"], geom, to_tpl, shape,
                                              model["affine"])
        assert image.shape == code.shape == tuple(shape) and image.flags.f_contiguous
        # reference: the same coordinates, trilinear from the coarse points, through grid_sample
        n, step = np.asarray(shape), synthetic._COARSE_STEP
        coarse = np.maximum(np.ceil((n - 1) / step).astype(int), 1) + 1
        q = synthetic._grid_world(to_tpl @ np.diag([step] * 3 + [1.0]), coarse).reshape(-1, 3)
        q += _torch_field_at(geom["u"], geom["grid_affine"], q)
        g = _grid_sample_coords(model["affine"], model["t1"].shape, q)
        g = torch.from_numpy(g.reshape(*coarse, 3)).permute(3, 2, 1, 0)[None]
        size = tuple(int(c - 1) * step + 1 for c in coarse[::-1])
        g = F.interpolate(g, size=size, mode="trilinear", align_corners=True)[:, :, :n[2], :n[1], :n[0]]
        g = g.permute(0, 2, 3, 4, 1).contiguous()

        def ref(vol, mode):
            v = torch.from_numpy(np.asarray(vol, np.float32))[None, None]
            return F.grid_sample(v, g, mode=mode, align_corners=True)[0, 0].numpy().transpose(2, 1, 0)

        np.testing.assert_allclose(image, ref(volumes[modality][0], "bilinear"), atol=1e-4)
        assert (image == 0).mean() > 0.01 and (code > 0).mean() > 0.05  # outside the model, and the brain
        assert (code != ref(volumes["code"], "nearest")).mean() < 1e-4  # ties at .5 may round apart


def test_occupancy_marks_every_block_a_lookup_can_read():
    """Block b is set exactly when a voxel 4b .. 4b+4 (per axis) is nonzero in any volume."""
    rng = np.random.default_rng(0)
    a = np.zeros((13, 9, 17), np.float32)
    a[rng.random(a.shape) < 0.01] = 1.0
    code = np.zeros(a.shape, np.int16)
    code[12, 8, 16] = 3  # the last voxel: only the last block along each axis reads it
    occ = synthetic.occupancy(a, code)
    assert occ.shape == (4, 3, 5) and occ.dtype == np.uint8
    nz = (a != 0) | (code != 0)
    want = np.array([[[nz[4 * i:4 * i + 5, 4 * j:4 * j + 5, 4 * k:4 * k + 5].any() for k in range(5)]
                      for j in range(3)] for i in range(4)])
    np.testing.assert_array_equal(occ.astype(bool), want)
    assert occ[-1, -1, -1] and 0 < occ.mean() < 1


def test_skipping_empty_blocks_changes_no_voxel(small):
    """The sampler with the occupancy gives the same voxels as with every block marked."""
    s, model, w = small["settings"], small["model"], small["weights"]["AD"]
    volumes = synthetic.sampling_volumes(model, w)
    assert 0.05 < volumes["occupancy"].mean() < 0.95  # the air around the head is skipped
    # the effect maps lie inside the brain: the images' and code's occupancy is the diagnosis' too
    np.testing.assert_array_equal(synthetic.model_occupancy(model, volumes["code"]), volumes["occupancy"])
    geom = synthetic.session_geometry(s, model, w, 1, 0, 1.0)
    for k, modality in enumerate(synthetic.MODALITIES):
        rng = np.random.default_rng(k)
        pose = synthetic._pose(rng, s, geom["scale"])
        affine, shape, _ = synthetic._native_grid(rng, s, modality, pose, model["head_points"])
        to_tpl = np.linalg.inv(pose) @ affine
        args = (volumes[modality][0], volumes["code"], geom, to_tpl, shape, model["affine"])
        image, code = synthetic.sample_native(*args, volumes["occupancy"])
        full_image, full_code = synthetic.sample_native(*args, np.ones_like(volumes["occupancy"]))
        np.testing.assert_array_equal(image, full_image)
        np.testing.assert_array_equal(code, full_code)
        assert (image == 0).mean() > 0.1


def test_distance_transform_matches_scipy():
    """The head model's compiled distance transform is scipy's exact EDT, also anisotropic."""
    from scipy import ndimage

    from braindl._synthetic_kernels import distance_to

    rng = np.random.default_rng(0)
    for shape, sampling in [((7, 9, 11), (1.0, 1.0, 1.0)), ((20, 15, 12), (1.0, 2.0, 1.5))]:
        mask = rng.random(shape) < 0.02
        mask[0, 0, 0] = True
        want = ndimage.distance_transform_edt(~mask, sampling=sampling)
        np.testing.assert_allclose(distance_to(mask.astype(np.uint8), *sampling), want, rtol=1e-12)


def test_dlb_pattern_spares_the_posterior_cingulate(default_config):
    """The cingulate island sign: DLB's hypometabolism is occipital, parietal and temporal, and spares the
    posterior cingulate (McKeith et al. 2017), unlike AD's."""
    from braindl import templates

    patterns = default_config["synthetic"]["patterns"]
    dlb = set(templates.region_indices(patterns["DLB"]["hypometabolism"], "AAL3"))
    cingulate = set(templates.region_indices(["Cingulate_Post"], "AAL3"))
    assert cingulate and not dlb & cingulate
    assert cingulate <= set(templates.region_indices(patterns["AD"]["hypometabolism"], "AAL3"))
    assert set(templates.region_indices(["Calcarine", "Parietal_Inf"], "AAL3")) <= dlb


# ---- effects besides disease: age, sex, site ---------------------------------------------------------
def test_site_table_is_neutral_when_off_and_varies_when_on(default_config):
    s = copy.deepcopy(default_config["synthetic"])
    on = synthetic.site_table(s)
    assert on.site.tolist() == [f"site{k}" for k in range(1, s["sites"] + 1)]
    assert on.equals(synthetic.site_table(s))  # deterministic for the seed
    for col in ("intensity_scale", "t1_contrast_gamma", "noise_factor", "pet_fwhm_mm"):
        assert on[col].nunique() == s["sites"], col
    assert (on.pet_fwhm_mm >= 2).all()
    off = synthetic.site_table({**s, "effects": synthetic.NO_EFFECTS})
    assert (off[["intensity_scale", "t1_contrast_gamma", "noise_factor"]] == 1).all().all()
    assert (off.pet_fwhm_mm == s["pet_fwhm_mm"]).all()
    # sex and age
    d = s["effects"]["sex_head_size"]
    assert synthetic.head_size_factor("M", s) / synthetic.head_size_factor("F", s) == pytest.approx((1 + d / 2) / (1 - d / 2))
    ref = s["effects"]["age_reference_years"]
    assert synthetic.age_losses(ref + 10, s) == pytest.approx(
        {"gm_loss_fraction": 10 * s["effects"]["gm_loss_per_year"],
         "hypometabolism_fraction": 10 * s["effects"]["hypometabolism_per_year"]})
    assert synthetic.age_losses(ref + 10, {**s, "effects": synthetic.NO_EFFECTS})["gm_loss_fraction"] == 0


def test_effects_are_recorded_in_the_ground_truth(small):
    import pandas as pd

    root, s = small["root"], small["settings"]
    sites = pd.read_csv(root / "truth" / "sites.tsv", sep="\t").set_index("site")
    pd.testing.assert_frame_equal(sites.reset_index(), synthetic.site_table(s), check_dtype=False)
    for row in small["table"].itertuples():
        sub = row.participant_id[4:]
        sessions = pd.read_csv(root / "bids" / row.participant_id / f"{row.participant_id}_sessions.tsv", sep="\t")
        for ses, age in zip(sessions.session_id, sessions.age):
            truth = json.loads(synthetic.truth_paths(root / "truth", sub, ses[4:])["sidecar"].read_text())["effects"]
            assert truth["age"] == age and truth["sex"] == row.sex and truth["site"] == row.site
            assert truth["gm_loss_fraction"] == pytest.approx(synthetic.age_losses(age, s)["gm_loss_fraction"])
            assert truth["head_size_factor"] == pytest.approx(synthetic.head_size_factor(row.sex, s))
            assert truth["pet_fwhm_mm"] == sites.loc[row.site, "pet_fwhm_mm"]
            pet = json.loads(synthetic.raw_paths(root / "bids", sub, ses[4:])["pet_json"].read_text())
            assert pet["ReconFilterSize"] == sites.loc[row.site, "pet_fwhm_mm"]
        # the head scale is the subject's random size times its sex factor, the same in every session
        scales = [json.loads(synthetic.truth_paths(root / "truth", sub, ses[4:])["sidecar"].read_text())
                  ["effects"]["head_scale_xyz"] for ses in sessions.session_id]
        assert scales[0] == scales[1]


def test_sex_scales_the_head(small):
    s, model, w = small["settings"], small["model"], small["weights"]["CN"]
    male = synthetic.session_geometry(s, model, w, 0, 0, 0.0, synthetic.head_size_factor("M", s))
    female = synthetic.session_geometry(s, model, w, 0, 0, 0.0, synthetic.head_size_factor("F", s))
    d = s["effects"]["sex_head_size"]
    np.testing.assert_allclose(male["scale"] / female["scale"], (1 + d / 2) / (1 - d / 2))


def _one_image(small, modality, site=None, age_loss=None, **change):
    s = {**small["settings"], **change}
    model, w = small["model"], small["weights"]["CN"]
    geom = synthetic.session_geometry(s, model, w, 0, 0, 0.0)
    out = synthetic.generate_modality(s, model, small.setdefault("cn_volumes", synthetic.sampling_volumes(model, w)),
                                      geom, modality, 0.0, np.random.default_rng(7), site, age_loss)
    return np.asarray(out["data"], np.float64), out["labels"], out["mask"]


def test_age_lowers_grey_matter_contrast_and_uptake_in_proportion(small):
    """Noise off: the images are linear in the age loss, and the loss sits in grey matter (the AAL3
    labels), not in deep white matter."""
    for modality, key, change in (("pet", "hypometabolism_fraction", {"pet_noise": 0.0}),
                                  ("T1w", "gm_loss_fraction", {"t1_noise": 0.0})):
        base, labels, mask = _one_image(small, modality, **change)
        one = _one_image(small, modality, age_loss={key: 0.05}, **change)[0]
        two = _one_image(small, modality, age_loss={key: 0.10}, **change)[0]
        gm = labels > 0
        wm = ndimage.binary_erosion((mask > 0) & (labels == 0), iterations=4)  # deep white matter (PET: ~10 mm in)
        drop_gm = 1 - one[gm].mean() / base[gm].mean()
        assert 0.01 < drop_gm < 0.05, (modality, drop_gm)
        assert 1 - two[gm].mean() / base[gm].mean() == pytest.approx(2 * drop_gm, rel=0.02)
        assert 1 - one[wm].mean() / base[wm].mean() < drop_gm / 2


def test_site_scale_noise_and_resolution_reach_the_pet(small):
    base = _one_image(small, "pet")[0]
    site = {"intensity_scale": 1.5, "noise_factor": 1.0, "t1_contrast_gamma": 1.0,
            "pet_fwhm_mm": small["settings"]["pet_fwhm_mm"]}
    np.testing.assert_allclose(_one_image(small, "pet", site)[0], 1.5 * base, rtol=1e-5)
    quiet = _one_image(small, "pet", {**site, "intensity_scale": 1.0, "noise_factor": 0.0})[0]
    np.testing.assert_allclose(quiet, _one_image(small, "pet", pet_noise=0.0)[0], rtol=1e-5)
    sharp = _one_image(small, "pet", {**site, "intensity_scale": 1.0, "pet_fwhm_mm": 4.0}, pet_noise=0.0)[0]
    blurred = _one_image(small, "pet", {**site, "intensity_scale": 1.0, "pet_fwhm_mm": 8.0}, pet_noise=0.0)[0]
    energy = lambda a: float(np.mean(np.diff(a, axis=0) ** 2)) / float(np.mean(a ** 2))  # noqa: E731
    assert energy(blurred) < 0.7 * energy(sharp)
    # the T1w's contrast exponent: a higher gamma darkens grey against white matter
    t1, labels, mask = _one_image(small, "T1w", t1_noise=0.0)
    t1g = _one_image(small, "T1w", {**site, "intensity_scale": 1.0, "t1_contrast_gamma": 1.3}, t1_noise=0.0)[0]
    gm, wm = labels > 0, ndimage.binary_erosion((mask > 0) & (labels == 0), iterations=4)
    assert t1g[gm].mean() / t1g[wm].mean() < t1[gm].mean() / t1[wm].mean() - 0.02


# ---- focal lesions (an MS-like group, 004 study 2) -----------------------------------------------------
@pytest.fixture(scope="module")
def ms_sessions(small, tmp_path_factory):
    """An MS subject's two sessions with lesions, and the same sessions generated without them."""
    s = {**small["settings"], "groups": {**small["settings"]["groups"], "MS": 1}}
    s["lesions"] = {**synthetic.NO_LESIONS, "groups": ["MS"], "new_per_year": 4.0}
    root = tmp_path_factory.mktemp("ms")
    sites = synthetic.lesion_sites(small["model"])
    sub = synthetic.participant_ids(s)[-1]
    for ses in ("01", "02"):
        synthetic.generate_session(s, small["model"], small["weights"]["CN"], sub, ses, root / "bids", root / "truth",
                                   sites=sites)
        synthetic.generate_session({**s, "lesions": {**s["lesions"], "groups": []}}, small["model"],
                                   small["weights"]["CN"], sub, ses, root / "plain", root / "plaintruth")
    return dict(settings=s, root=root, sub=sub, sites=sites)


@pytest.mark.slow  # about 40 s: the lesion sites' distance maps and four sessions
def test_lesion_masks_are_where_the_images_changed(ms_sessions):
    root, sub = ms_sessions["root"], ms_sessions["sub"]
    for ses in ("01", "02"):
        truth = synthetic.truth_paths(root / "truth", sub, ses)
        for mod in synthetic.MODALITIES:
            mask = np.asarray(nib.load(str(truth[f"{mod}_lesions"])).dataobj) > 0
            a = np.asarray(nib.load(str(synthetic.raw_paths(root / "bids", sub, ses)[mod])).dataobj, float)
            b = np.asarray(nib.load(str(synthetic.raw_paths(root / "plain", sub, ses)[mod])).dataobj, float)
            assert mask.sum() > 50, (ses, mod)
            changed = np.abs(a - b) > 1e-3 * np.abs(b).max()
            near = ndimage.binary_dilation(mask, iterations=4 if mod == "T1w" else 6)
            assert changed[~near].mean() < 1e-4, (ses, mod)  # nothing changed away from the lesions
            assert (a[mask] < b[mask]).mean() > 0.9, (ses, mod)  # T1w hypointense, less uptake inside
        side = json.loads(truth["sidecar"].read_text())["lesions"]
        tpl = np.asarray(nib.load(str(truth["tpl_lesions"])).dataobj)
        assert tpl.shape == templates.load_template(1.0).brain_mask.shape
        assert side["volume_ml"] == pytest.approx(tpl.sum() / 1000.0, rel=1e-3)  # 1 mm template voxels
        assert side["count"] == sum(side["by_kind"].values()) >= 3


@pytest.mark.slow
def test_lesion_load_grows_over_sessions_and_lesions_sit_in_white_matter(ms_sessions, small):
    root, sub = ms_sessions["root"], ms_sessions["sub"]
    side = [json.loads(synthetic.truth_paths(root / "truth", sub, s)["sidecar"].read_text())["lesions"]
            for s in ("01", "02")]
    tpl = [np.asarray(nib.load(str(synthetic.truth_paths(root / "truth", sub, s)["tpl_lesions"])).dataobj) > 0
           for s in ("01", "02")]
    assert side[1]["count"] > side[0]["count"] and side[1]["volume_ml"] > side[0]["volume_ml"]
    assert not (tpl[0] & ~tpl[1]).any()  # the baseline lesions persist
    tissue = templates.load_template(1.0)
    assert tissue.wm[tpl[1]].mean() > 0.5 and tissue.gm[tpl[1]].mean() < 0.4
    # the kinds follow their definitions: periventricular centres near the ventricles, others not
    by = {k: [les for les in side[1]["list"] if les["kind"] == k] for k in synthetic.LESION_KINDS}
    assert len(by["periventricular"]) > len(by["deep"])
    # a subject without a lesion group has no lesion files
    cn = small["table"].set_index("diagnosis").loc["CN", "participant_id"][4:]
    assert not synthetic.truth_paths(small["root"] / "truth", cn, "01")["tpl_lesions"].exists()


def test_a_session_writes_exactly_the_truth_files_the_workflow_declares(small):
    """The synthetic_cohort rule declares session_truth_files as outputs: no more, no fewer are written
    (lesion masks only for a lesion group)."""
    root, s = small["root"], small["settings"]
    for row in small["table"].itertuples():
        sub = row.participant_id[4:]
        for ses in ("01", "02"):
            declared = {str(p) for p in synthetic.session_truth_files(s, root / "truth", sub, ses, row.diagnosis)}
            d = root / "truth" / row.participant_id / f"ses-{ses}"
            written = {str(p) for p in d.rglob("*") if p.is_file()}
            assert written == declared, (row.diagnosis, written ^ declared)
    ms = {**s, "lesions": {**synthetic.NO_LESIONS, "groups": ["MS"]}}
    with_lesions = synthetic.session_truth_files(ms, root / "truth", "009", "01", "MS")
    assert sum("lesion" in p.name for p in with_lesions) == 3  # T1w, PET and template space


@pytest.mark.parametrize("step", [2.0, 3.0])
def test_coarse_template_grid_is_the_filtered_volume_subsampled(step):
    """templates._downsample filters axis by axis and subsamples after each pass: the same numbers as
    Gaussian anti-aliasing of the whole 1 mm volume followed by taking every step-th voxel."""
    rng = np.random.default_rng(0)
    data = rng.random((31, 26, 23)).astype(np.float32)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-15.0, -12.0, -11.0]
    got, target = templates._downsample(data, affine, step)
    k = int(step)
    ref = ndimage.gaussian_filter(data, np.sqrt(step ** 2 - 1.0) / 2.3548)[::k, ::k, ::k]
    np.testing.assert_array_equal(got, ref)
    assert got.shape == tuple(int(np.ceil(n / step)) for n in data.shape)
    np.testing.assert_array_equal(target[:3, 3], affine[:3, 3])
    assert np.allclose(np.diag(target)[:3], step)


def test_template_volumes_are_computed_at_first_use_and_match_nilearns():
    """A job that reads the brain mask only (cropping) filters no tissue map; at 1 mm the mask and the
    grey-matter map are nilearn's own (``load_mni152_brain_mask``: the T1 above 0.2 of its maximum)."""
    from nilearn import datasets

    coarse = templates.Template(2.0)
    assert coarse.brain_mask.shape == (99, 117, 95) and coarse.brain_mask.sum() > 0
    assert not {"t1", "gm", "wm", "csf"} & set(vars(coarse))
    np.testing.assert_array_equal(coarse.brain_mask, templates.load_template(2.0).brain_mask)
    with pytest.raises(AttributeError, match="read-only"):
        coarse.t1 = coarse.brain_mask
    fine = templates.Template(1.0)
    np.testing.assert_array_equal(fine.brain_mask, datasets.load_mni152_brain_mask(resolution=1).get_fdata() > 0)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata()
    np.testing.assert_allclose(fine.gm, gm / gm.max() * fine.brain_mask, atol=1e-6)
    np.testing.assert_allclose(fine.csf + fine.gm + fine.wm, fine.brain_mask, atol=1e-6)
