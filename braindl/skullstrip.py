"""Skull stripping of registered scans, for all three registration variants, and their QC rows.

Each scan has one native brain mask (:mod:`braindl.extraction`); each variant's
registration job carries it onto its own grid. Stripping keeps the voxels of
that carried mask, so the three variants are cut out by the same
subject-specific mask (004 study 4 ran one tool, FSL BET, identically after
every variant). Each scan also gets a QC figure (template edges and the mask
outline over the registered image) and a row of QC measures that
:mod:`braindl.qc` gathers over the variants.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from braindl import templates
from braindl.io import write_nifti, write_tsv

QC_COLUMNS = ("participant_id", "session_id", "modality", "variant", "similarity", "brain_volume_ml",
              "grid_volume_ml", "affine_determinant", "jacobian_p01", "jacobian_p99", "extraction_method",
              "registration_seconds")


def strip(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with everything outside the mask set to zero."""
    return np.where(mask > 0, image, 0).astype(np.float32)


def qc_row(mask: np.ndarray, affine: np.ndarray, sidecar, native_sidecar, ids: dict) -> dict:
    """QC measures of one stripped scan (see :data:`QC_COLUMNS`).

    ``brain_volume_ml`` is the native mask's volume (the extraction stage's, one per
    scan); ``grid_volume_ml`` the carried mask's on the variant's grid;
    ``affine_determinant`` the volume scaling of the chain's affine steps, and for
    SyN ``jacobian_p01``/``jacobian_p99`` the 1st and 99th percentile of its
    Jacobian determinant in the template brain (volume change of the warp).
    """
    meta = json.loads(Path(sidecar).read_text())
    native = json.loads(Path(native_sidecar).read_text())
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    sim = meta.get("SimilarityToTemplate")
    return {**ids, "variant": meta["Variant"], "similarity": np.nan if sim is None else round(float(sim), 4),
            "brain_volume_ml": float(native["BrainVolumeML"]),
            "grid_volume_ml": round(float(mask.sum()) * voxel_ml, 2),
            "affine_determinant": round(float(meta.get("AffineDeterminant", 1.0)), 4),
            "jacobian_p01": meta.get("JacobianP01", np.nan), "jacobian_p99": meta.get("JacobianP99", np.nan),
            "extraction_method": native["Method"], "registration_seconds": meta.get("Seconds")}


def qc_figure(path, image: np.ndarray, mask: np.ndarray, template: np.ndarray, title: str,
              dpi: int = 100) -> pd.DataFrame:
    """Three orthogonal slices through the template's centre of mass: registered image, template edges
    (red), mask outline (cyan). Returns what it shows (:func:`braindl.figures.plotted`: the slices)."""
    from braindl.figures import save_figure  # noqa: I001 (sets the Agg backend before pyplot)
    import matplotlib.pyplot as plt
    from skimage.feature import canny

    centre = [int(c) for c in np.round(ndimage.center_of_mass(template > 0))]
    vmax = float(np.percentile(image[image > 0], 99.5)) if (image > 0).any() else 1.0
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4), facecolor="black")
    for ax, axis in zip(axes, (0, 1, 2)):
        take = lambda a: np.rot90(np.take(a, centre[axis], axis=axis))  # noqa: E731
        ax.imshow(take(image), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        t = take(template)
        edges = canny(t, sigma=1.0, low_threshold=0.05 * t.max(), high_threshold=0.15 * t.max()) if t.max() > 0 else t > 0
        overlay = np.zeros(edges.shape + (4,))
        overlay[edges] = (1.0, 0.2, 0.2, 0.9)
        ax.imshow(overlay, interpolation="nearest")
        m = take(mask.astype(float))
        if m.max() > 0:
            ax.contour(m, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_axis_off()
    fig.suptitle(title, color="white", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi, facecolor="black", bbox_inches=None)


def run_skullstrip(images: dict, masks: dict, sidecars: dict, native_sidecars: dict, outputs: dict,
                   participant: str, session: str, dpi: int = 100) -> None:
    """Strip every modality of one session and variant; write images, QC figures and QC rows.

    ``images``/``masks``/``sidecars``: per modality, the registration outputs (image,
    carried mask, sidecar); ``native_sidecars``: the extraction sidecars.
    ``outputs``: ``<mod>_brain``, ``<mod>_qc`` per modality and ``qc`` (TSV).
    """
    rows = []
    for mod in images:
        img = nib.load(str(images[mod]))
        data = np.asarray(img.dataobj, dtype=np.float32)
        mask = np.asarray(nib.load(str(masks[mod])).dataobj) > 0
        if not mask.any():
            raise ValueError(f"{masks[mod]}: the brain mask carried onto this grid is empty; "
                             "the registration did not cover the brain")
        write_nifti(outputs[f"{mod}_brain"], strip(data, mask), img.affine)
        meta = json.loads(Path(sidecars[mod]).read_text())
        res = float(meta["ResolutionMM"])
        # the none grid holds the template's matrix voxel for voxel: its edges show how far off the head lies
        template = templates.load_template(res).t1
        qc_figure(outputs[f"{mod}_qc"], data, mask, template,
                  f"sub-{participant} ses-{session} {mod} {meta['Variant']}", dpi=dpi)
        rows.append(qc_row(mask, img.affine, sidecars[mod], native_sidecars[mod],
                           {"participant_id": f"sub-{participant}", "session_id": f"ses-{session}", "modality": mod}))
    import pandas as pd

    write_tsv(outputs["qc"], pd.DataFrame(rows, columns=list(QC_COLUMNS)))
