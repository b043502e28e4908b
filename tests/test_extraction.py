"""Extraction stage without a registration: masks, refusals, the settings a job depends on."""

import re

import numpy as np
import pytest

from braindl import derivatives, extraction


def test_largest_component_keeps_the_brain_and_fills_holes():
    m = np.zeros((30, 30, 30), bool)
    m[5:20, 5:20, 5:20] = True
    m[10:13, 10:13, 10:13] = False  # a hole
    m[25:28, 25:28, 25:28] = True  # a detached blob (eye, scalp)
    out = extraction.largest_component(m)
    assert out[11, 11, 11] == 1 and out[26, 26, 26] == 0 and out.sum() == 15 ** 3


@pytest.mark.parametrize("n, words", [(0, "found no brain (empty mask)"),
                                      (50, "gave a 125 ml mask, outside the plausible 800-2800 ml"),
                                      (150, "gave a 3375 ml mask, outside the plausible 800-2800 ml")])
def test_implausible_masks_are_refused_naming_the_scan(n, words):
    mask = np.zeros((150, 150, 150), bool)
    mask[:n, :n, :n] = True
    with pytest.raises(extraction.ExtractionError, match=re.escape(f"sub-9_T1w.nii.gz: brain extraction {words}")):
        extraction.check_mask(mask, np.eye(4), "sub-9_T1w.nii.gz", (800, 2800))


def test_plausible_mask_volume():
    mask = np.zeros((20, 20, 20), bool)
    mask[:10, :10, :10] = True
    assert extraction.check_mask(mask, np.diag([10.0, 10, 10, 1]), "x", (800, 2800)) == pytest.approx(1000.0)


def test_job_settings_name_what_each_route_uses(default_config):
    ss, reg = default_config["skullstrip"], default_config["registration"]
    both = extraction.job_settings(ss, reg, ["T1w", "pet"])
    assert {"method", "n4", "deepbet_threshold", "brain_volume_ml"} <= set(both["skullstrip"])
    assert "pet_tissue_threshold" not in both["skullstrip"]
    # via_t1: the rigid's settings, not SyN's
    assert "affine_iterations" in both["registration"] and "syn_iterations" not in both["registration"]
    pet_only = extraction.job_settings(ss, {**reg, "pet_route": "pet_template"}, ["pet"])
    assert "pet_tissue_threshold" in pet_only["skullstrip"] and "n4" not in pet_only["skullstrip"]
    assert "syn_iterations" in pet_only["registration"]
    fallback = extraction.job_settings({**ss, "method": "registration"}, reg, ["T1w"])
    assert "syn_radius_mm" in fallback["registration"] and "deepbet_threshold" not in fallback["skullstrip"]


def test_registration_reads_the_corrected_t1w_and_the_raw_pet(tmp_path):
    ext = derivatives.extraction(tmp_path, "01", "02", ["T1w", "pet"], "via_t1")
    native = extraction.registration_inputs(ext, {"T1w": "raw_T1w.nii.gz", "pet": "raw_pet.nii.gz"})
    assert native["T1w"].endswith("sub-01_ses-02_desc-preproc_T1w.nii.gz") and native["pet"] == "raw_pet.nii.gz"
    assert native["pet_rigid"].endswith("_from-pet_to-T1w_desc-rigid_mode-image_xfm.mat")
    assert "pet_rigid" not in derivatives.extraction(tmp_path, "01", "02", ["pet"], "pet_template")
