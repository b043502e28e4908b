"""Cropping to template-space boxes and intensity normalisation."""

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from braindl import crop


def test_box_affine_puts_centre_voxel_at_centre():
    aff = crop.box_affine([96, 114, 96], 2.0, [1.0, -17.0, 5.0])
    centre_voxel = (np.array([96, 114, 96]) - 1) / 2
    assert np.allclose(aff[:3, :3] @ centre_voxel + aff[:3, 3], [1.0, -17.0, 5.0])
    assert np.allclose(np.diag(aff)[:3], 2.0)


def test_resampling_keeps_world_position():
    src_aff = np.diag([1.0, 1.0, 1.0, 1.0])
    src_aff[:3, 3] = [-50, -60, -40]
    data = np.zeros((100, 120, 90), np.float32)
    point = np.array([10.0, -20.0, 6.0])  # world mm
    ijk = np.rint(np.linalg.inv(src_aff) @ np.r_[point, 1])[:3].astype(int)
    data[tuple(ijk)] = 1.0
    data = ndimage.gaussian_filter(data, 2.0)
    box = crop.box_affine([40, 50, 30], 2.0, [0.0, 0.0, 0.0])
    out = crop.resample_to_box(data, src_aff, box, [40, 50, 30], order=1)
    centroid = np.array(ndimage.center_of_mass(out))
    assert np.allclose(box[:3, :3] @ centroid + box[:3, 3], point, atol=0.1)


def test_same_grid_phase_is_a_pure_crop():
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    data = np.random.default_rng(0).random((30, 30, 30)).astype(np.float32)
    box = aff.copy()
    box[:3, 3] = aff[:3, 3] + 2.0 * np.array([5, 6, 7])
    out = crop.resample_to_box(data, aff, box, [10, 11, 12])
    assert np.allclose(out, data[5:15, 6:17, 7:19], atol=1e-6)


@pytest.mark.parametrize("name,shape", [("mri_2mm", (96, 114, 96)), ("pet_000", (79, 95, 60)),
                                        ("spect_001", (95, 95, 48))])
def test_presets_give_the_papers_shapes(tmp_path, default_config, name, shape):
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-98, -134, -72]
    data = np.random.default_rng(1).random((99, 117, 95)).astype(np.float32) + 1
    mask = np.zeros(data.shape, np.uint8)
    mask[20:80, 20:100, 20:80] = 1
    nib.save(nib.Nifti1Image(data * mask, aff), str(tmp_path / "img.nii.gz"))
    nib.save(nib.Nifti1Image(mask, aff), str(tmp_path / "mask.nii.gz"))
    box = default_config["crop"]["box"][name]
    out, box_aff, stats = crop.crop_scan(tmp_path / "img.nii.gz", tmp_path / "mask.nii.gz", box, "minmax")
    assert out.shape == shape
    assert 0.0 <= out.min() and out.max() == pytest.approx(1.0)
    # the share of the brain's volume the box keeps: the mask's voxel centres inside the box's world extent
    ijk = np.argwhere(mask > 0)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    lo = box_aff[:3, 3] - 0.5 * np.diag(box_aff)[:3]
    hi = lo + np.array(shape) * np.diag(box_aff)[:3]
    inside = np.all((world >= np.minimum(lo, hi)) & (world < np.maximum(lo, hi)), axis=1).mean()
    assert stats["brain_fraction_in_box"] == pytest.approx(inside, abs=0.02)


def test_normalisations():
    rng = np.random.default_rng(2)
    data = rng.normal(100, 20, (20, 20, 20)).astype(np.float32)
    mask = np.zeros(data.shape, bool)
    mask[5:15, 5:15, 5:15] = True
    inside = data[mask]
    mm, _ = crop.normalise(data, mask, "minmax")
    assert mm[mask].min() == pytest.approx(0) and mm[mask].max() == pytest.approx(1)
    assert np.all(mm[~mask] == 0)
    z, stats = crop.normalise(data, mask, "zscore")
    assert z[mask].mean() == pytest.approx(0, abs=1e-5) and z[mask].std() == pytest.approx(1, abs=1e-4)
    assert stats["mean"] == pytest.approx(inside.mean(), rel=1e-5)
    mx, _ = crop.normalise(data, mask, "max")
    assert mx[mask].max() == pytest.approx(1) and np.allclose(mx[mask], inside / inside.max(), atol=1e-6)
    # 000's standardise-then-rescale (one mean and SD per scan, then [0, 1]) is min-max: no setting of its own
    zs = (inside - inside.mean()) / inside.std()
    assert np.allclose(mm[mask], (zs - zs.min()) / (zs.max() - zs.min()), atol=1e-5)
    assert "standardise_rescale" not in crop.NORMALISATIONS
    with pytest.raises(ValueError, match="unknown normalisation"):
        crop.normalise(data, mask, "histogram")
    with pytest.raises(ValueError, match="empty brain mask"):
        crop.normalise(data, np.zeros_like(mask), "minmax")


def test_unknown_preset_named(default_config):
    settings = {**default_config["crop"], "preset": {"T1w": "mri_1mm"}}
    with pytest.raises(ValueError, match="crop.preset.T1w = 'mri_1mm'"):
        crop.box_settings(settings, "T1w")


def test_strip_and_crop_in_one_job_equals_the_two_steps(tmp_path, default_config):
    """run_strip_and_crop (rule strip_crop): the stripped image, QC rows and crop of one session and variant
    are those of run_skullstrip and then run_crop on its output; the crop reads the stripped image (zero
    outside the carried mask)."""
    import json

    import pandas as pd

    from braindl import planning, skullstrip

    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-98, -134, -72]
    rng = np.random.default_rng(3)
    data = (rng.random((99, 117, 95)) + 1).astype(np.float32)
    mask = np.zeros(data.shape, np.uint8)
    mask[20:80, 20:100, 20:80] = 1
    nib.save(nib.Nifti1Image(data, aff), str(tmp_path / "img.nii.gz"))
    nib.save(nib.Nifti1Image(mask, aff), str(tmp_path / "mask.nii.gz"))
    (tmp_path / "reg.json").write_text(json.dumps({"Variant": "linear", "ResolutionMM": 2.0, "Seconds": 1.0}))
    (tmp_path / "native.json").write_text(json.dumps({"BrainVolumeML": 1150.0, "Method": "deepbet"}))
    args = ({"T1w": tmp_path / "img.nii.gz"}, {"T1w": tmp_path / "mask.nii.gz"}, {"T1w": tmp_path / "reg.json"},
            {"T1w": tmp_path / "native.json"})
    settings = planning.crop_settings(default_config)

    def outs(pre):
        strip = {"T1w_brain": tmp_path / f"{pre}_brain.nii.gz", "T1w_qc": tmp_path / f"{pre}_qc.png",
                 "qc": tmp_path / f"{pre}_qc.tsv"}
        return strip, {"T1w": tmp_path / f"{pre}_crop.nii.gz", "T1w_json": tmp_path / f"{pre}_crop.json"}

    (s1, c1), (s2, c2) = outs("job"), outs("steps")
    crop.run_strip_and_crop(*args, {**s1, **c1}, "01", "01", settings, aligned=True, dpi=40)
    skullstrip.run_skullstrip(*args, s2, "01", "01", dpi=40)
    crop.run_crop(settings, {"T1w": s2["T1w_brain"]}, args[1], c2, aligned=True)
    brain = nib.load(str(s1["T1w_brain"])).get_fdata()
    assert brain[mask == 0].max() == 0 and brain[mask > 0].min() >= 1
    np.testing.assert_array_equal(brain, nib.load(str(s2["T1w_brain"])).get_fdata())
    pd.testing.assert_frame_equal(pd.read_csv(s1["qc"], sep="\t"), pd.read_csv(s2["qc"], sep="\t"))
    cropped = nib.load(str(c1["T1w"])).get_fdata()
    assert cropped.shape == (96, 114, 96) and cropped.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(cropped, nib.load(str(c2["T1w"])).get_fdata())
    meta = json.loads(c1["T1w_json"].read_text())
    assert meta["Source"] == str(s1["T1w_brain"]) and meta["Box"] == "mri_2mm"
