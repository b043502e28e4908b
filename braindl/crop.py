"""Cropping to a template-space box and intensity normalisation.

A box is a grid in template space: ``shape`` voxels (array order x, y, z =
left-right, posterior-anterior, inferior-superior), ``resolution_mm`` and a centre
(``center_mm``, world mm; default the centre of the template's brain). The
skull-stripped image is resampled onto it (linear; a pure pad/crop when the box
shares the working grid's voxel size and phase). Presets from the papers:

* ``mri_2mm``: 96x114x96 at 2 mm (004).
* ``pet_000``: 79x95x60 at 2 mm. 000 writes "95x79x60": its axial slices are
  95 rows (anterior-posterior) by 79 columns (left-right), as its 570x790 mosaic
  of 6x10 slices shows; 60 axial slices remain after dropping 10 + 9.
* ``spect_001``: 95x95x48 at 2 mm (001, slices above the cranium and below the
  cerebellum removed; the box is centred on the brain).

Normalisation (statistics over the brain mask, background 0):
``minmax`` (to [0, 1]; also 000's recipe: "subtracting feature-specific mean then
dividing by the feature-specific standard deviation per each scan ... further scaling
to have all intensities values in the range of [0,1]", Keras' feature-wise
standardisation being one mean and one SD per channel, and min-max scaling of a
standardised scan being min-max scaling of the scan), ``zscore``, ``max`` (divide by
the maximum, 004 study 5).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from braindl import templates
from braindl.io import write_json, write_nifti

NORMALISATIONS = ("minmax", "zscore", "max")


def default_center(resolution_mm: float = 1.0) -> np.ndarray:
    """World coordinates (mm) of the centre of the template brain's bounding box."""
    tpl = templates.load_template(float(resolution_mm))
    idx = np.argwhere(tpl.brain_mask > 0)
    mid = (idx.min(0) + idx.max(0)) / 2.0
    return tpl.affine[:3, :3] @ mid + tpl.affine[:3, 3]


def box_affine(shape, resolution_mm, center_mm) -> np.ndarray:
    """RAS affine of a box grid whose centre voxel lies at ``center_mm``."""
    res = np.broadcast_to(np.asarray(resolution_mm, dtype=float), (3,))
    aff = np.diag(list(res) + [1.0])
    aff[:3, 3] = np.asarray(center_mm, dtype=float) - res * (np.asarray(shape, dtype=float) - 1) / 2
    return aff


def resample_to_box(data: np.ndarray, affine: np.ndarray, box_aff: np.ndarray, shape, order: int = 1) -> np.ndarray:
    """Resample ``data`` (voxel-to-world ``affine``) onto the box grid; outside is 0."""
    vox2vox = np.linalg.inv(affine) @ box_aff
    return ndimage.affine_transform(np.asarray(data, dtype=np.float32), vox2vox[:3, :3], vox2vox[:3, 3],
                                    output_shape=tuple(int(s) for s in shape), order=order, mode="constant",
                                    cval=0.0).astype(np.float32)


def normalise(data: np.ndarray, mask: np.ndarray, method: str) -> tuple[np.ndarray, dict]:
    """Normalise intensities with statistics over ``mask``; returns the image and the statistics."""
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {method!r}; choose one of {NORMALISATIONS}")
    inside = mask > 0
    if not inside.any():
        raise ValueError("empty brain mask: nothing to normalise")
    vals = data[inside].astype(np.float64)
    stats = {"mean": float(vals.mean()), "std": float(vals.std()), "min": float(vals.min()), "max": float(vals.max())}
    out = np.zeros_like(data, dtype=np.float32)
    if method == "minmax":
        span = stats["max"] - stats["min"]
        out[inside] = (vals - stats["min"]) / span if span > 0 else 0.0
    elif method == "max":
        out[inside] = vals / stats["max"] if stats["max"] != 0 else 0.0
    else:  # zscore
        out[inside] = (vals - stats["mean"]) / stats["std"] if stats["std"] > 0 else 0.0
    return out, stats


def box_settings(settings: dict, modality: str) -> tuple[str, dict]:
    """Name and definition (shape, resolution_mm, center_mm) of the box used for ``modality``."""
    name = settings["preset"][modality]
    if name not in settings["box"]:
        raise ValueError(f"crop.preset.{modality} = {name!r} is not one of crop.box {sorted(settings['box'])}")
    return name, settings["box"][name]


def scan_box_affine(image_affine: np.ndarray, box: dict, aligned: bool = True) -> np.ndarray:
    """The voxel-to-world affine of ``box`` for a registered image with ``image_affine`` (see
    :func:`crop_scan` for ``aligned``)."""
    from braindl.registration import grid_to_scanner

    center = box.get("center_mm") or default_center(1.0)
    aff = box_affine(box["shape"], box["resolution_mm"], center)
    if not aligned:
        aff = grid_to_scanner(image_affine, float(np.sqrt((image_affine[:3, :3] ** 2).sum(0)).mean())) @ aff
    return aff


def crop_scan(image_path, mask_path, box: dict, method: str, aligned: bool = True) -> tuple[np.ndarray, np.ndarray, dict]:
    """Crop and normalise one skull-stripped scan; returns (image, affine, statistics).

    ``aligned=False`` (the ``none`` variant, in the scanner's world): the box takes
    the same voxels of the image's grid as it takes of the template grid, and the
    cropped image keeps the scanner's world coordinates.
    """
    img = nib.load(str(image_path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    mask = np.asarray(nib.load(str(mask_path)).dataobj)
    aff = scan_box_affine(img.affine, box, aligned)
    cropped = resample_to_box(data, img.affine, aff, box["shape"], order=1)
    cropped_mask = resample_to_box(mask, img.affine, aff, box["shape"], order=0) > 0.5
    kept = float(cropped_mask.sum() * np.prod(np.abs(np.diag(aff)[:3]))) / max(
        float(mask.sum() * abs(np.linalg.det(img.affine[:3, :3]))), 1e-9)
    out, stats = normalise(cropped, cropped_mask, method)
    stats["brain_fraction_in_box"] = round(kept, 4)
    return out, aff, stats


def run_crop(settings: dict, images: dict, masks: dict, outputs: dict, aligned: bool = True) -> None:
    """Crop and normalise every modality of one session and variant (``<mod>``, ``<mod>_json``);
    ``aligned``: whether the images are in template space (see :func:`crop_scan`)."""
    for mod in images:
        name, box = box_settings(settings, mod)
        data, aff, stats = crop_scan(images[mod], masks[mod], box, settings["normalisation"], aligned)
        write_nifti(outputs[mod], data, aff)
        write_json(outputs[f"{mod}_json"], {
            "Source": str(images[mod]), "Box": name, "Shape": list(box["shape"]),
            "ResolutionMM": box["resolution_mm"], "CenterMM": [round(float(c), 3) for c in
                                                             (box.get("center_mm") or default_center(1.0))],
            "Normalisation": settings["normalisation"], "Statistics": stats,
            "InTemplateSpace": bool(aligned),
        })


def run_strip_and_crop(images: dict, masks: dict, sidecars: dict, native_sidecars: dict, outputs: dict,
                       participant: str, session: str, settings: dict, aligned: bool = True, dpi: int = 100) -> None:
    """One session and variant's chain after its registration, in one process (rule strip_crop): the skull
    stripping with its QC figures and rows (:func:`braindl.skullstrip.run_skullstrip`: ``outputs``'
    ``<mod>_brain``, ``<mod>_qc`` and ``qc``), then the crop and normalisation of the stripped images
    (:func:`run_crop`: ``<mod>`` and ``<mod>_json``), each the same as from its own call."""
    from braindl.skullstrip import run_skullstrip

    run_skullstrip(images, masks, sidecars, native_sidecars, outputs, participant, session, dpi=dpi)
    run_crop(settings, {m: outputs[f"{m}_brain"] for m in images}, masks, outputs, aligned=aligned)
