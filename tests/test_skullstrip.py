"""Skull stripping: thresholded prior, largest component, QC figure and row."""

import json

import numpy as np

from braindl import skullstrip
from braindl.io import write_itk_affine


def test_mask_keeps_largest_component_and_fills_holes():
    prior = np.zeros((30, 30, 30), np.float32)
    prior[5:20, 5:20, 5:20] = 0.9
    prior[10:13, 10:13, 10:13] = 0.1  # a hole
    prior[25:28, 25:28, 25:28] = 0.9  # a detached blob (e.g. eye, scalp)
    mask = skullstrip.brain_mask(prior, 0.5)
    assert mask[11, 11, 11] == 1
    assert mask[26, 26, 26] == 0
    assert mask.sum() == 15 ** 3


def test_strip_zeroes_outside():
    img = np.ones((4, 4, 4), np.float32)
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    assert skullstrip.strip(img, mask).sum() == 8


def test_qc_row_and_figure(tmp_path):
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    m = np.eye(4)
    m[:3, :3] *= 1.1  # native head 1.1x the template: volume x 1.331
    write_itk_affine(tmp_path / "xfm.mat", m)
    (tmp_path / "reg.json").write_text(json.dumps({"Variant": "linear", "SimilarityToTemplate": 0.9,
                                                   "Seconds": 2.0, "TemplateToNative": [{"affine": "xfm.mat"}]}))
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[5:15, 5:15, 5:15] = 1
    row = skullstrip.qc_row(mask * 1.0, mask, aff, tmp_path / "reg.json",
                            {"participant_id": "sub-1", "session_id": "ses-1", "modality": "T1w"})
    assert row["mask_volume_ml"] == 8.0
    assert abs(row["brain_volume_ml"] - 8.0 * 1.331) < 0.01
    skullstrip.qc_figure(tmp_path / "qc.png", mask * 1.0, mask, mask * 1.0, "test")
    assert (tmp_path / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
