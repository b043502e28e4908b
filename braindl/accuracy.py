"""Registration and skull stripping checked against the synthetic cohort's ground truth.

For one scan and variant:

* ``mask_dice``: the true native brain mask carried into the variant's image by
  the *estimated* transform, against the skull-strip mask used there.
* ``region_dice``: the true native atlas labels carried the same way, against the
  template's atlas; mean over regions.
* ``displacement_mm``: for template-grid points in the brain, the distance between
  where the estimated and the true transforms put them in the native scan; mean
  and 95th percentile. Native world coordinates are resampled from coordinate
  images on a padded grid, so both transforms are evaluated by the same ANTs code.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from braindl import registration, synthetic, templates


def _coordinate_images(scan_path, spacing: float = 3.0, margin_mm: float = 80.0):
    """Three ANTs images holding the RAS world x, y, z of each voxel, on a padded grid around a scan."""
    img = nib.load(str(scan_path))
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in img.shape[:3]], indexing="ij")).reshape(3, -1)
    world = img.affine[:3, :3] @ corners + img.affine[:3, 3:4]
    lo, hi = world.min(1) - margin_mm, world.max(1) + margin_mm
    shape = tuple(int(np.ceil((h - b) / spacing)) + 1 for b, h in zip(lo, hi))
    aff = np.diag([spacing] * 3 + [1.0])
    aff[:3, 3] = lo
    grids = np.meshgrid(*[lo[i] + spacing * np.arange(shape[i], dtype=np.float32) for i in range(3)], indexing="ij")
    return [registration.to_ants(g.astype(np.float32), aff) for g in grids]


def _mapped_points(fixed, coords, transformlist, whichtoinvert) -> np.ndarray:
    return np.stack([registration.apply_chain(fixed, c, transformlist, whichtoinvert, "linear").numpy()
                     for c in coords], -1)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / total) if total else 1.0


def mean_region_dice(labels: np.ndarray, reference: np.ndarray, min_voxels: int = 10) -> float:
    """Mean Dice over the regions of ``reference`` with at least ``min_voxels`` voxels."""
    ids, counts = np.unique(reference[reference > 0], return_counts=True)
    scores = [dice(labels == i, reference == i) for i, n in zip(ids, counts) if n >= min_voxels]
    return float(np.mean(scores)) if scores else float("nan")


def evaluate(sidecar, mask_path, truth_dir, participant: str, session: str, native_mask=None) -> dict:
    """Accuracy of one registered, skull-stripped scan (see the module docstring).

    ``native_mask``: the extraction stage's native brain mask of the scan, scored
    against the true native brain mask (``native_mask_dice``).
    """
    import tempfile

    from braindl.io import write_itk_affine

    meta = json.loads(Path(sidecar).read_text())
    mod, res = meta["Modality"], float(meta["ResolutionMM"])
    chain, base = registration.read_chain(sidecar)
    est, est_inv = registration.to_native_list(chain, base)
    true, true_inv = synthetic.truth_transformlist(truth_dir, participant, session, mod, to_template=True)
    truth = synthetic.truth_paths(truth_dir, participant, session)
    tpl = templates.load_template(res)
    image = nib.load(str(Path(sidecar).with_name(Path(sidecar).name.replace(".json", ".nii.gz"))))
    own = registration.to_ants(np.zeros(image.shape, np.float32), image.affine)  # the variant's grid
    native_truth = registration.load_scan(truth[f"{mod}_brainmask"])
    carried = registration.apply_chain(own, native_truth, est, est_inv, "linear").numpy() > 0.5
    strip_mask = np.asarray(nib.load(str(mask_path)).dataobj) > 0
    native_labels = registration.load_scan(truth[f"{mod}_labels"])
    labels = registration.apply_chain(own, native_labels, est, est_inv, "genericLabel").numpy()
    atlas = templates.atlas_on_grid(tpl.affine, tpl.brain_mask.shape) * (tpl.brain_mask > 0)
    coords = _coordinate_images(meta["Source"])
    brain = tpl.brain_mask > 0
    grid = registration._grid(res)
    with tempfile.TemporaryDirectory() as tmp:
        if not meta["InTemplateSpace"]:  # none: template voxel j sits at the none grid's voxel j
            write_itk_affine(Path(tmp) / "grid.mat", registration.grid_to_scanner(image.affine, res))
            est, est_inv = [str(Path(tmp) / "grid.mat")], [False]
        err = np.linalg.norm(_mapped_points(grid, coords, est, est_inv)[brain]
                             - _mapped_points(grid, coords, true, true_inv)[brain], axis=-1)
    out = {"modality": mod, "variant": meta["Variant"], "mask_dice": round(dice(carried, strip_mask), 4),
           "region_dice": round(mean_region_dice(np.rint(labels).astype(int), atlas), 4),
           "displacement_mm": round(float(err.mean()), 3), "displacement_p95_mm": round(float(np.percentile(err, 95)), 3),
           "registration_seconds": meta.get("Seconds")}
    if native_mask is not None:
        est_native = np.asarray(nib.load(str(native_mask)).dataobj) > 0
        out["native_mask_dice"] = round(dice(est_native, native_truth.numpy() > 0.5), 4)
    return out


def preprocess_session(config: dict, scans: dict, out, participant: str, session: str,
                       threads: int = 1) -> tuple[dict, dict, dict, dict]:
    """Run extraction, registration (all variants), skull stripping and cropping of one session, as the
    workflow does.

    For benchmarks and tests outside Snakemake. ``config``: the workflow config
    (sections ``registration``, ``skullstrip``, ``qc``, ``crop``); ``scans``: native
    scan per modality. Returns the extraction outputs, the registration paths and
    the skull-strip outputs per variant, and the seconds of each step
    (``extraction``, ``none``, ``linear``, ``syn``, ``strip_crop``).
    """
    import time

    from braindl import crop, derivatives, extraction, skullstrip

    reg = config["registration"]
    mods = list(scans)
    out = Path(out)
    ext = derivatives.extraction(out, participant, session, mods, reg["pet_route"])
    seconds = {}
    t0 = time.perf_counter()
    extraction.run_extraction(config["skullstrip"], reg, scans, ext, threads)
    seconds["extraction"] = time.perf_counter() - t0
    native = extraction.registration_inputs(ext, scans)
    paths = {v: derivatives.registration(out, participant, session, v, mods, reg["pet_route"])
             for v in registration.VARIANTS}
    for v in ("linear", "syn", "none"):  # syn starts from linear
        t0 = time.perf_counter()
        prev = registration.previous_variant(v)
        registration.run_variant(v, reg, native, paths[prev] if prev else {}, paths[v], threads=threads)
        seconds[v] = time.perf_counter() - t0
    strip = {}
    t0 = time.perf_counter()
    for v in registration.VARIANTS:
        o = derivatives.skullstrip(out, participant, session, v, mods)
        skullstrip.run_skullstrip({m: paths[v][m] for m in mods}, {m: paths[v][f"{m}_mask"] for m in mods},
                                  {m: paths[v][f"{m}_json"] for m in mods}, {m: ext[f"{m}_json"] for m in mods},
                                  o, participant, session, dpi=config["qc"]["dpi"])
        crop.run_crop(config["crop"], {m: o[f"{m}_brain"] for m in mods}, {m: paths[v][f"{m}_mask"] for m in mods},
                      derivatives.crop(out, participant, session, v, mods), aligned=v != "none")
        strip[v] = o
    seconds["strip_crop"] = time.perf_counter() - t0
    return ext, paths, strip, seconds

