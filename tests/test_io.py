"""Atomic writers: NIfTI through ISA-L gzip, file modes, nothing left behind on failure."""

import os

import nibabel as nib
import numpy as np
import pytest

from braindl import io


@pytest.mark.parametrize("order", ["C", "F"])
def test_gzipped_nifti_round_trips_and_is_deterministic(tmp_path, order):
    data = np.asarray(np.random.default_rng(0).integers(0, 3000, (17, 12, 9)), dtype=np.int16, order=order)
    affine = np.diag([1.1, -1.2, 1.3, 1.0])
    affine[:3, 3] = [5, 6, -7]
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    io.write_nifti(a, data, affine)
    io.write_nifti(b, data, affine)
    img = nib.load(str(a))
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)
    np.testing.assert_allclose(img.affine, affine)
    assert img.header.get_data_dtype() == np.int16
    assert a.read_bytes()[:2] == b"\x1f\x8b"  # a gzip stream
    assert a.read_bytes() == b.read_bytes()  # mtime 0: equal images, equal files
    io.write_nifti(tmp_path / "c.nii", data, affine)  # uncompressed through nibabel
    np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "c.nii")).dataobj), data)


def test_artifacts_get_the_umask_mode_and_failures_leave_nothing(tmp_path):
    io.write_json(tmp_path / "x.json", {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "y.nii.gz"):
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
