"""Skull stripping with the carried native mask: QC figure and row."""

import json

import numpy as np

from braindl import skullstrip


def test_strip_zeroes_outside():
    img = np.ones((4, 4, 4), np.float32)
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    assert skullstrip.strip(img, mask).sum() == 8


def test_qc_row_reads_the_native_volume_and_the_warp(tmp_path):
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    (tmp_path / "reg.json").write_text(json.dumps({
        "Variant": "syn", "SimilarityToTemplate": 0.9, "Seconds": 2.0, "AffineDeterminant": 1.331,
        "JacobianP01": 0.7, "JacobianP99": 1.4}))
    (tmp_path / "native.json").write_text(json.dumps({"Method": "deepbet", "BrainVolumeML": 1432.5}))
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[5:15, 5:15, 5:15] = 1
    row = skullstrip.qc_row(mask, aff, tmp_path / "reg.json", tmp_path / "native.json",
                            {"participant_id": "sub-1", "session_id": "ses-1", "modality": "T1w"})
    assert row["grid_volume_ml"] == 8.0 and row["brain_volume_ml"] == 1432.5
    assert row["affine_determinant"] == 1.331 and (row["jacobian_p01"], row["jacobian_p99"]) == (0.7, 1.4)
    assert row["extraction_method"] == "deepbet" and set(row) == set(skullstrip.QC_COLUMNS)
    (tmp_path / "none.json").write_text(json.dumps({"Variant": "none", "SimilarityToTemplate": None}))
    row = skullstrip.qc_row(mask, aff, tmp_path / "none.json", tmp_path / "native.json", {})
    assert np.isnan(row["similarity"]) and np.isnan(row["jacobian_p99"]) and row["affine_determinant"] == 1.0


def test_qc_figure_shows_the_image_through_the_templates_centre(tmp_path):
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[5:15, 5:15, 5:15] = 1
    template = np.zeros((20, 20, 20))
    template[6:16, 4:14, 8:18] = 1.0  # centre of mass (10.5, 8.5, 12.5): cuts at 10, 8, 12 (rounded half to even)
    image = np.random.default_rng(0).uniform(0, 1, (20, 20, 20))
    shown = skullstrip.qc_figure(tmp_path / "qc.png", image, mask, template, "test")
    assert (tmp_path / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grey = shown[shown.artist == "image"].groupby("panel").image.first()  # each panel: the image, then the edges
    for axis, cut in enumerate((10, 8, 12)):
        np.testing.assert_allclose(grey[axis], np.rot90(np.take(image, cut, axis=axis)))
