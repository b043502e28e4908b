"""Atomic writers: NIfTI through ISA-L gzip, file modes, nothing left behind on failure."""

import os
import subprocess
import sys

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


_PROBE = """
import resource, sys
if sys.argv[1] == "braindl":
    import braindl
    assert braindl.MALLOC_TUNED
import numpy as np
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # what a stage does: a volume-sized array and two temporaries, freed, again
    a = np.ones(7 * 2**20, np.float32)
    b = a * 2
    c = a + b
    del a, b, c
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_importing_braindl_keeps_freed_volumes_for_reuse(tmp_path):
    """braindl keeps freed arrays up to 32 MiB in the heap: the same three 28 MiB arrays allocated 20 times
    fault their pages in far less often (a fresh mapping is zeroed by the kernel on first touch)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def faults(mode, extra=None):
        out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True,
                             env={**env, **(extra or {})})
        return int(out.stdout)

    # glibc's defaults: the freed arrays go back to the kernel (heap trimmed) and come back as fresh pages;
    # braindl's: their pages are faulted in on the first round only (30916 against 1564 here)
    plain, tuned = faults("numpy"), faults("braindl")
    assert 5 * tuned < plain, (plain, tuned)
    # a user's own malloc settings are left alone
    probe = "import braindl; print(int(braindl.MALLOC_TUNED))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**env, "MALLOC_TRIM_THRESHOLD_": "131072"})
    assert out.stdout.strip() == "0"
