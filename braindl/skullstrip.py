"""Skull stripping of registered scans, for all three registration variants.

The registration stage carries the template's brain prior into every variant's
image (for ``none`` through the inverse of a real registration of the same scan,
so the mask lands on the unaligned head). Skull stripping thresholds that prior:

* T1w (``mri_threshold``): the template brain mask, linearly interpolated.
* PET (``pet_tissue_threshold``): the grey-matter + white-matter + CSF
  probability (000's tissue-probability approach: brain tissue kept, bone and
  soft tissue dropped).

The largest connected component is kept and holes are filled. Each scan also
gets a QC figure (template edges and the mask outline over the registered image)
and a row of QC measures that :mod:`braindl.qc` gathers per variant.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from braindl import templates
from braindl.io import atomic_path, read_itk_affine, write_nifti, write_tsv

QC_COLUMNS = ("participant_id", "session_id", "modality", "variant", "similarity", "mask_volume_ml",
              "brain_volume_ml", "affine_determinant", "registration_seconds")


def brain_mask(prior: np.ndarray, threshold: float) -> np.ndarray:
    """Binary mask: prior above ``threshold``, largest connected component, holes filled."""
    mask = prior > float(threshold)
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask.astype(np.uint8)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    mask = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(mask).astype(np.uint8)


def strip(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with everything outside the mask set to zero."""
    return np.where(mask > 0, image, 0).astype(np.float32)


def chain_determinant(sidecar) -> float:
    """Volume scaling (|det|) of the affine steps of a registration chain, native per template mm^3."""
    meta = json.loads(Path(sidecar).read_text())
    base = Path(sidecar).resolve().parent
    det = 1.0
    for step in meta["TemplateToNative"]:
        if "affine" in step:
            det *= float(np.linalg.det(read_itk_affine(base / step["affine"])[:3, :3]))
    return abs(det)


def qc_row(image: np.ndarray, mask: np.ndarray, affine: np.ndarray, sidecar, ids: dict) -> dict:
    """QC measures of one stripped scan (see :data:`QC_COLUMNS`)."""
    meta = json.loads(Path(sidecar).read_text())
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    mask_ml = float(mask.sum()) * voxel_ml
    det = chain_determinant(sidecar)
    # the none variant's chain only reorients and resamples (|det| 1): its mask came
    # through a real registration, so its grid volume already is the native volume
    brain_ml = mask_ml * (det if meta["Variant"] != "none" else 1.0)
    return {**ids, "variant": meta["Variant"], "similarity": float(meta["SimilarityToTemplate"]),
            "mask_volume_ml": round(mask_ml, 2), "brain_volume_ml": round(brain_ml, 2),
            "affine_determinant": round(det, 4), "registration_seconds": meta.get("Seconds")}


def qc_figure(path, image: np.ndarray, mask: np.ndarray, template: np.ndarray, title: str, dpi: int = 100) -> None:
    """Three orthogonal slices: registered image, template edges (red), mask outline (cyan)."""
    import matplotlib

    matplotlib.use("Agg")
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, facecolor="black", format="png")
    plt.close(fig)


def run_skullstrip(settings: dict, images: dict, priors: dict, sidecars: dict, outputs: dict,
                   participant: str, session: str, dpi: int = 100) -> None:
    """Strip every modality of one session and variant; write masks, images, QC figures and QC rows.

    ``images``/``priors``/``sidecars``: per modality, the registration outputs.
    ``outputs``: ``<mod>_mask``, ``<mod>_brain``, ``<mod>_qc`` per modality and ``qc`` (TSV).
    """
    rows = []
    for mod in images:
        img = nib.load(str(images[mod]))
        data = np.asarray(img.dataobj, dtype=np.float32)
        prior = np.asarray(nib.load(str(priors[mod])).dataobj, dtype=np.float32)
        threshold = settings["mri_threshold"] if mod == "T1w" else settings["pet_tissue_threshold"]
        mask = brain_mask(prior, threshold)
        if not mask.any():
            raise ValueError(f"{priors[mod]}: no voxel of the brain prior exceeds {threshold}; "
                             "the registration did not cover the brain")
        stripped = strip(data, mask)
        write_nifti(outputs[f"{mod}_mask"], mask, img.affine, np.uint8)
        write_nifti(outputs[f"{mod}_brain"], stripped, img.affine)
        res = float(abs(img.affine[0, 0]))
        template = templates.load_template(res).t1
        meta = json.loads(Path(sidecars[mod]).read_text())
        qc_figure(outputs[f"{mod}_qc"], data, mask, template,
                  f"sub-{participant} ses-{session} {mod} {meta['Variant']}", dpi=dpi)
        rows.append(qc_row(stripped, mask, img.affine, sidecars[mod],
                           {"participant_id": f"sub-{participant}", "session_id": f"ses-{session}", "modality": mod}))
    import pandas as pd

    write_tsv(outputs["qc"], pd.DataFrame(rows, columns=list(QC_COLUMNS)))
