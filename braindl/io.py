"""Atomic writers for the artifacts every stage produces.

Each writer writes to a temporary file in the target directory and renames it
into place, so an interrupted job never leaves a half-written NIfTI, table or
sidecar behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
from isal import igzip

if TYPE_CHECKING:  # pandas is not imported by the jobs that write no table (0.4 s of each job's start)
    import pandas as pd

# mkstemp creates files readable by their owner only; artifacts get the usual umask mode
_UMASK = os.umask(0)
os.umask(_UMASK)

#: gzip level of written ``.nii.gz`` files (nibabel's default); ISA-L's level 1 compresses
#: as tightly as zlib's level 1, about four times faster.
GZIP_LEVEL = 1


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_nifti(path, data: np.ndarray, affine: np.ndarray, dtype=None, intent: str | None = None) -> None:
    """Write ``data`` with ``affine`` (qform and sform both set, code 'scanner').

    ``.nii.gz`` is compressed with ISA-L (``isal.igzip``, a standard gzip stream with
    mtime 0, so equal images give equal files). NIfTI stores Fortran order: other
    arrays are copied to it in one pass first (nibabel would transpose them slab by
    slab, about 5x slower); a Fortran-ordered ``data`` is written without a copy.
    """
    arr = np.asfortranarray(data if dtype is None else data.astype(dtype, order="F"))
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if intent:
        img.header.set_intent(intent)
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            tmp.write_bytes(igzip.compress(img.to_bytes(), GZIP_LEVEL, mtime=0))
        else:
            nib.save(img, str(tmp))


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_tsv(path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="n/a")


def _ras_to_lps_affine(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.diag([-1.0, -1.0, 1.0])
    return f @ m[:3, :3] @ f, f @ m[:3, 3]


def write_itk_affine(path, m: np.ndarray) -> None:
    """Write a RAS point-mapping affine ``m`` as an ITK transform file (.mat).

    ITK's MATLAB-v4 layout: ``AffineTransform_double_3_3`` holds the 3x3 matrix
    row by row and the translation, ``fixed`` the centre (zero here), in LPS.
    """
    from scipy.io import savemat

    mat, trans = _ras_to_lps_affine(m)
    params = np.concatenate([mat.ravel(), trans]).reshape(-1, 1)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            savemat(fh, {"AffineTransform_double_3_3": params, "fixed": np.zeros((3, 1))}, format="4")


def read_itk_affine(path) -> np.ndarray:
    """Read an ITK affine transform file (.mat) as a RAS point-mapping 4x4 matrix.

    Handles ITK's centre of rotation (``fixed``): p -> M (p - c) + c + t.
    """
    from scipy.io import loadmat

    d = loadmat(str(path))
    key = next(k for k in d if k.startswith(("AffineTransform", "MatrixOffsetTransformBase")))
    params = np.asarray(d[key], dtype=np.float64).ravel()
    mat, trans = params[:9].reshape(3, 3), params[9:12]
    centre = np.asarray(d.get("fixed", np.zeros(3)), dtype=np.float64).ravel()
    offset = trans + centre - mat @ centre
    f = np.diag([-1.0, -1.0, 1.0])
    out = np.eye(4)
    out[:3, :3] = f @ mat @ f
    out[:3, 3] = f @ offset
    return out


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def job_file_lists(named: dict, what: str, error: type[Exception] = ValueError, runs: int | None = None) -> dict:
    """The named file lists of one job of several runs (:func:`braindl.planning.job_runs`), one file per
    run in the runs' order (a single path stands for a one-run list). Checked before any run is computed:
    ``error`` names ``what`` when a list is missing (None), or when the lists (and ``runs``, the count of
    the job's runs, when given) differ in length or are empty."""
    lists = {}
    for name, files in named.items():
        if files is None:
            raise error(f"{what}: no {name} files")
        lists[name] = [files] if isinstance(files, (str, Path)) else list(files)
    lengths = {**({} if runs is None else {"runs": runs}), **{name: len(files) for name, files in lists.items()}}
    if len(set(lengths.values())) != 1 or not next(iter(lengths.values()), 0):
        raise error(f"{what}: the file lists differ in length or are empty: {lengths}")
    return lists
