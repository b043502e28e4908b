"""Registration to the MNI152 2009 template with ANTs: variants ``none``, ``linear``, ``syn``.

Every variant writes, per scan, the image on its grid at the working resolution,
the scan's native brain mask carried onto that grid (one mask per scan, from
:mod:`braindl.extraction`, shared by all variants), and the transforms that
relate the grid to the native scan (protocol: 004 study 4).

* ``none``: no alignment (004: "pad and/or crop the scan to the template's
  matrix"). The scan is reoriented to the closest RAS axes, resampled to the
  working resolution and padded/cropped around its array centre to the
  template's matrix; off-centre position and rotation stay. The image keeps the
  scanner's world coordinates (its header is the true voxel-to-world map, space
  ``scanner``), so no viewer overlays it on the template as if registered; its
  transform to the native scan is the identity.
* ``linear``: ANTs rigid then affine, mutual information (``antsRegistrationSyN.sh -t a``).
* ``syn``: ANTs SyN on cross-correlation, started from the scan's ``linear``
  affine (``-t s``: rigid + affine on MI, then SyN on CC); the CC radius is
  ``syn_radius_mm`` at the working resolution.

The registered image is the extracted, bias-corrected brain (T1w) or the
extracted PET, registered to the skull-stripped template brain. PET follows
``pet_route``: ``pet_template`` registers it the same way to a PET template made
from the bundled tissue maps (uptake GM 1, WM 0.3, CSF 0.04, blurred to the
scanner resolution), so PET-only datasets work; ``via_t1`` follows the
session's T1w transforms after the PET-to-T1w rigid of the extraction stage.

Transform chains
----------------
A chain lists the transforms that map points of the variant's grid to points of
the native scan, in ``ants.apply_transforms`` order (first to last). Steps are
``{"affine": file}`` or ``{"warp": file, "inverse_warp": file}``, with paths
relative to the JSON sidecar that stores the chain. :func:`to_native_list` and
:func:`to_template_list` turn a chain into ``transformlist`` / ``whichtoinvert``
for either direction.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from braindl import templates
from braindl.io import atomic_path, read_itk_affine, write_itk_affine, write_json, write_nifti

SPACE = templates.TEMPLATE_SPACE
VARIANTS = ("none", "linear", "syn")
_LPS = np.diag([-1.0, -1.0, 1.0])
# PET uptake per tissue class for the PET template (relative to grey matter)
PET_UPTAKE = {"gm": 1.0, "wm": 0.3, "csf": 0.04}


class RegistrationError(RuntimeError):
    """A registration that failed or diverged; the message names the scan."""


# ---------------------------------------------------------------------------
# paths (cheap: used at Snakefile parse time)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# images and templates
# ---------------------------------------------------------------------------


def to_ants(data: np.ndarray, affine: np.ndarray):
    """An ANTs image from an array and its RAS voxel-to-world affine (ANTs works in LPS)."""
    import ants

    spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
    direction = _LPS @ affine[:3, :3] / spacing
    return ants.from_numpy(np.ascontiguousarray(data, dtype=np.float32), origin=tuple(_LPS @ affine[:3, 3]),
                           spacing=tuple(spacing), direction=direction)


def from_ants(img) -> tuple[np.ndarray, np.ndarray]:
    """Array and RAS affine of an ANTs image."""
    affine = np.eye(4)
    affine[:3, :3] = _LPS @ np.asarray(img.direction) * np.asarray(img.spacing)
    affine[:3, 3] = _LPS @ np.asarray(img.origin)
    return img.numpy(), affine


def load_scan(path):
    """A NIfTI scan as an ANTs image (float32)."""
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    return to_ants(data, img.affine)


@lru_cache(maxsize=8)
def template_volume(modality: str, resolution_mm: float, pet_fwhm_mm: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """The registration target of ``modality``: (array, affine) on the working grid."""
    tpl = templates.load_template(float(resolution_mm))
    if modality == "T1w":
        return tpl.t1, tpl.affine
    pet = PET_UPTAKE["gm"] * tpl.gm + PET_UPTAKE["wm"] * tpl.wm + PET_UPTAKE["csf"] * tpl.csf
    sigma = float(pet_fwhm_mm) / (2 * np.sqrt(2 * np.log(2))) / float(resolution_mm)
    return ndimage.gaussian_filter(pet, sigma).astype(np.float32), tpl.affine


@lru_cache(maxsize=8)
def brain_prior(modality: str, resolution_mm: float) -> np.ndarray:
    """Template brain prior on the working grid, which the registration route of extraction
    (:func:`braindl.extraction.registration_mask`) carries to a scan and thresholds.

    T1w: the template brain mask. PET: the sum of the grey-matter, white-matter
    and CSF probabilities (bone and soft tissue excluded). The bundled maps have no
    CSF map, so CSF is the brain mask minus GM and WM and the two priors coincide
    in template space; they differ once carried through a registration.
    """
    tpl = templates.load_template(float(resolution_mm))
    if modality == "T1w":
        return tpl.brain_mask.astype(np.float32)
    return np.clip(tpl.gm + tpl.wm + tpl.csf, 0, 1).astype(np.float32)


def none_affine(native_affine: np.ndarray, native_shape, grid_affine: np.ndarray, grid_shape) -> np.ndarray:
    """The ``none`` variant's transform: template-grid point -> native point (RAS, 4x4).

    Template voxel ``j`` maps to the reoriented native voxel
    ``(j - c_grid) * res / zoom + c_native``: voxel axes reoriented to the closest
    RAS axes, scaled to the working resolution, array centres matched. The
    header's position and rotation are ignored, so the head stays where and as it
    lay in the scanner.
    """
    ornt = nib.io_orientation(native_affine)
    canon_shape = np.empty(3)
    canon_shape[ornt[:, 0].astype(int)] = np.asarray(native_shape[:3], dtype=float)
    canonical = native_affine @ nib.orientations.inv_ornt_aff(ornt, native_shape[:3])
    zooms = np.sqrt((canonical[:3, :3] ** 2).sum(0))
    res = np.sqrt((grid_affine[:3, :3] ** 2).sum(0))
    scale = res / zooms
    s = np.eye(4)
    s[:3, :3] = np.diag(scale)
    s[:3, 3] = (canon_shape - 1) / 2 - scale * (np.asarray(grid_shape, dtype=float) - 1) / 2
    return canonical @ s @ np.linalg.inv(grid_affine)


# ---------------------------------------------------------------------------
# transform chains
# ---------------------------------------------------------------------------


def _resolve(base, rel: str) -> str:
    return str((Path(base) / rel).resolve())


def to_native_list(chain: list[dict], base) -> tuple[list[str], list[bool]]:
    """``transformlist`` and ``whichtoinvert`` with fixed = template grid, moving = native scan."""
    files = [_resolve(base, step.get("warp", step.get("affine"))) for step in chain]
    return files, [False] * len(files)


def to_template_list(chain: list[dict], base) -> tuple[list[str], list[bool]]:
    """``transformlist`` and ``whichtoinvert`` with fixed = native scan, moving = template grid."""
    files, invert = [], []
    for step in reversed(chain):
        if "affine" in step:
            files.append(_resolve(base, step["affine"]))
            invert.append(True)
        else:
            files.append(_resolve(base, step["inverse_warp"]))
            invert.append(False)
    return files, invert


def _relative(chain: list[dict], old_base, new_base) -> list[dict]:
    """Re-express a chain's paths relative to another sidecar folder."""
    return [{k: os.path.relpath(_resolve(old_base, v), new_base) for k, v in step.items()} for step in chain]


def _apply_transforms_lists(chain: list[dict], base) -> dict:
    """Both directions as ``ants.apply_transforms`` arguments, paths relative to ``base``."""
    out = {}
    for name, fn, fixed in (("to_template", to_native_list, "template grid"), ("to_native", to_template_list, "native scan")):
        files, invert = fn(chain, base)
        out[name] = {"fixed": fixed, "transformlist": [os.path.relpath(f, base) for f in files],
                     "whichtoinvert": invert}
    return out


def read_chain(sidecar) -> tuple[list[dict], Path]:
    """The chain stored in a registration sidecar and the folder its paths are relative to."""
    import json

    meta = json.loads(Path(sidecar).read_text())
    return meta["TemplateToNative"], Path(sidecar).resolve().parent


def apply_chain(fixed, moving, transformlist, whichtoinvert, interpolator="linear"):
    import ants

    return ants.apply_transforms(fixed, moving, transformlist, whichtoinvert=whichtoinvert,
                                 interpolator=interpolator)


# ---------------------------------------------------------------------------
# ANTs
# ---------------------------------------------------------------------------


@contextmanager
def ants_settings(seed: int, threads: int):
    """A fixed random seed for ANTs' metric sampling and ITK's thread count."""
    import ants.config

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(1, int(threads)))
    old = ants.config._random_seed
    ants.config._random_seed = int(seed)
    try:
        yield
    finally:
        ants.config._random_seed = old


# multi-resolution levels of the rigid/affine stages (antspyx defaults), coarsest first
_AFF_SHRINK = (8, 6, 4, 2, 1)
_AFF_SIGMAS = (4, 3, 2, 1, 0)


def syn_radius(settings: dict) -> int:
    """CC neighbourhood radius in voxels of the working grid (``syn_radius_mm`` / resolution, at least 1)."""
    return max(1, int(round(float(settings["syn_radius_mm"]) / float(settings["resolution_mm"]))))


def ants_register(fixed, moving, kind: str, settings: dict, outprefix: str, initial: str | None = None) -> dict:
    """Run one antsRegistration; ``kind`` is ``rigid``, ``affine`` or ``syn``.

    ``affine`` is a rigid stage, then an affine stage started from it (as
    ANTs' own antsRegistrationSyN.sh does): a lone affine stage from the
    centre-of-mass start sometimes drifts into a scaled local optimum
    (|det| ~1.6 on a synthetic scan, similarity 0.25). With ``initial`` (an
    affine file) the affine stage starts from it instead. The result holds one
    affine file that composes both (checked: one transform file). ``syn`` runs
    SyN only (``SyNOnly``) from ``initial``, the scan's affine, on
    ``syn_metric`` (CC: radius :func:`syn_radius`) with SyN[``syn_gradient_step``,
    ``syn_flow_sigma``, ``syn_total_sigma``]. Transform files are written under ``outprefix``.
    """
    import ants

    metric = settings["metric"]
    common = dict(outprefix=outprefix)
    levels = tuple(settings["affine_iterations"])
    linear = dict(aff_metric=metric, aff_iterations=levels, aff_shrink_factors=_AFF_SHRINK[-len(levels):],
                  aff_smoothing_sigmas=_AFF_SIGMAS[-len(levels):], **common)
    if kind == "rigid":
        return ants.registration(fixed, moving, "Rigid", **linear)
    if kind == "affine":
        if initial is None:
            # antspyx lists every file that starts with outprefix as a result: the rigid
            # stage's files must not share it (the affine output already composes them)
            p = Path(outprefix)
            rigid = ants.registration(fixed, moving, "Rigid", **{**linear, "outprefix": str(p.parent / f"rigidstage_{p.name}")})
            initial = rigid["fwdtransforms"][0]
        out = ants.registration(fixed, moving, "Affine", initial_transform=initial, **linear)
        if len(out["fwdtransforms"]) != 1:
            raise RegistrationError(f"expected one affine transform file, got {out['fwdtransforms']}")
        return out
    if kind == "syn":
        if initial is None:
            raise ValueError("syn registration needs the scan's affine as initial transform")
        cc = settings["syn_metric"] == "CC"
        return ants.registration(fixed, moving, "SyNOnly", initial_transform=initial, syn_metric=settings["syn_metric"],
                                 syn_sampling=syn_radius(settings) if cc else 32,
                                 reg_iterations=tuple(settings["syn_iterations"]),
                                 grad_step=float(settings["syn_gradient_step"]),
                                 flow_sigma=float(settings["syn_flow_sigma"]),
                                 total_sigma=float(settings["syn_total_sigma"]), **common)
    raise ValueError(f"unknown registration kind {kind!r}")


def _copy(src, dst) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def similarity(data: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of an image with its template inside the template brain mask."""
    a, b = data[mask > 0].astype(np.float64), target[mask > 0].astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


# ---------------------------------------------------------------------------
# one job per session and variant
# ---------------------------------------------------------------------------


def _check_registered(data: np.ndarray, source, variant: str) -> None:
    if not np.isfinite(data).all() or float(np.abs(data).max()) == 0.0:
        raise RegistrationError(
            f"{source}: {variant} registration produced an empty image on the template grid "
            "(the scan is blank or the registration diverged)"
        )


def none_grid(native_affine: np.ndarray, native_shape, resolution_mm: float) -> tuple[np.ndarray, tuple]:
    """Voxel-to-world affine and shape of the ``none`` variant's grid: the template's matrix at the
    working resolution, reoriented to the native scan's closest RAS axes and centred on its array,
    in the scanner's world coordinates."""
    tpl = templates.load_template(float(resolution_mm))
    shape = tpl.brain_mask.shape
    return none_affine(native_affine, native_shape, tpl.affine, shape) @ tpl.affine, shape


def grid_to_scanner(image_affine: np.ndarray, resolution_mm: float) -> np.ndarray:
    """For a ``none`` image: the world map that takes template-grid points to the same voxel of the
    ``none`` grid (so a template-space box crops the same voxels it crops on the template grid)."""
    return np.asarray(image_affine) @ np.linalg.inv(templates.load_template(float(resolution_mm)).affine)


def jacobian_stats(warp, grid, mask: np.ndarray) -> dict:
    """Jacobian determinant of a SyN warp on ``grid`` inside ``mask``: 1st and 99th percentile, mean."""
    import ants

    jac = ants.create_jacobian_determinant_image(grid, str(warp), do_log=False).numpy()[mask > 0]
    return {"JacobianP01": round(float(np.percentile(jac, 1)), 4), "JacobianP99": round(float(np.percentile(jac, 99)), 4),
            "JacobianMean": round(float(jac.mean()), 4), "JacobianMin": round(float(jac.min()), 4)}


def _write_outputs(outputs: dict, mod: str, variant: str, native: dict, chain: list[dict], settings: dict,
                   seconds: float, grid, space: str, extra: dict | None = None) -> None:
    """Resample the scan and its native mask through ``chain`` onto ``grid``; write image, mask, sidecar."""
    sidecar = Path(outputs[f"{mod}_json"])
    res = float(settings["resolution_mm"])
    files, invert = to_native_list(chain, sidecar.resolve().parent)
    scan = load_scan(native[mod])
    data, affine = from_ants(apply_chain(grid, scan, files, invert, "linear"))
    _check_registered(data, native[mod], variant)
    carried = apply_chain(grid, load_scan(native[f"{mod}_mask"]), files, invert, "linear").numpy() > 0.5
    aligned = space == SPACE
    meta = {
        "Variant": variant,
        "Modality": mod,
        "Source": str(native[mod]),
        "NativeMask": str(native[f"{mod}_mask"]),
        "Space": space,
        "InTemplateSpace": aligned,
        "ResolutionMM": res,
        "TemplateToNative": chain,
        "TransformConvention": "steps map points of this image's grid to native points, first to last "
                               "(ants.apply_transforms order); paths relative to this file",
        "ApplyTransforms": _apply_transforms_lists(chain, sidecar.resolve().parent),
        "SimilarityToTemplate": similarity(data, _target(mod, settings)[0], templates.load_template(res).brain_mask)
        if aligned else None,
        "Seconds": round(seconds, 3),
        "RandomSeed": settings.get("random_seed"),
        **(extra or {}),
    }
    write_nifti(outputs[mod], data.astype(np.float32), affine)
    write_nifti(outputs[f"{mod}_mask"], carried.astype(np.uint8), affine, np.uint8)
    write_json(sidecar, meta)


def _grid(res: float):
    """An empty image on the template grid (the fixed image of every resampling)."""
    tpl = templates.load_template(res)
    return to_ants(np.zeros(tpl.brain_mask.shape, np.float32), tpl.affine)


def _target(mod: str, settings: dict):
    return template_volume(mod, float(settings["resolution_mm"]), float(settings["pet_template_fwhm_mm"]))


def _working(scan, res: float):
    """The scan resampled to the isotropic working resolution (registration input)."""
    import ants

    return ants.resample_image(scan, (res, res, res), use_voxels=False, interp_type=0)


def _brain(native: dict, mod: str, res: float):
    """The extracted brain (scan x native mask) at the working resolution: what is registered."""
    return _working(load_scan(native[mod]) * load_scan(native[f"{mod}_mask"]), res)


def _via_t1(mod: str, settings: dict) -> bool:
    return mod == "pet" and settings["pet_route"] == "via_t1"


def _t1_chain_plus_rigid(outputs: dict, native: dict) -> list[dict]:
    """A ``via_t1`` PET's chain: the session's T1w chain, then the PET-to-T1w rigid of the extraction."""
    base = Path(outputs["pet_json"]).resolve().parent
    t1_chain, t1_base = read_chain(outputs["T1w_json"])
    return _relative(t1_chain, t1_base, base) + [{"affine": os.path.relpath(Path(native["pet_rigid"]).resolve(), base)}]


def run_linear(settings: dict, native: dict, outputs: dict, threads: int = 1) -> None:
    """``linear`` variant of one session: rigid + affine of the extracted brain to the template brain.

    ``native``: per modality the scan (``<mod>``: the bias-corrected T1w, the PET)
    and its native mask (``<mod>_mask``), and ``pet_rigid`` on the ``via_t1`` route.
    """
    res = float(settings["resolution_mm"])
    # ITK fixes its thread count at its first use in a process: the settings come before any ANTs call
    with ants_settings(settings["random_seed"], threads), tempfile.TemporaryDirectory() as tmp:
        grid = _grid(res)
        for mod in _order(native):
            t0 = time.perf_counter()
            extra = {}
            if _via_t1(mod, settings):
                chain = _t1_chain_plus_rigid(outputs, native)
            else:
                target, affine = _target(mod, settings)
                reg = ants_register(to_ants(target, affine), _brain(native, mod, res), "affine", settings,
                                    str(Path(tmp) / f"{mod}_"))
                _copy(reg["fwdtransforms"][0], outputs[f"{mod}_affine"])
                chain = [{"affine": Path(outputs[f"{mod}_affine"]).name}]
            extra["AffineDeterminant"] = chain_determinant(chain, Path(outputs[f"{mod}_json"]).resolve().parent)
            _write_outputs(outputs, mod, "linear", native, chain, settings, time.perf_counter() - t0, grid, SPACE,
                           extra)


def run_syn(settings: dict, native: dict, linear: dict, outputs: dict, threads: int = 1) -> None:
    """``syn`` variant of one session: SyN from the ``linear`` affine (``linear``: that job's outputs)."""
    res = float(settings["resolution_mm"])
    brain = templates.load_template(res).brain_mask
    with ants_settings(settings["random_seed"], threads), tempfile.TemporaryDirectory() as tmp:
        grid = _grid(res)
        for mod in _order(native):
            t0 = time.perf_counter()
            base = Path(outputs[f"{mod}_json"]).resolve().parent
            if _via_t1(mod, settings):
                chain = _t1_chain_plus_rigid(outputs, native)
                extra = {k: v for k, v in json.loads(Path(outputs["T1w_json"]).read_text()).items()
                         if k.startswith("Jacobian")}
            else:
                target, affine = _target(mod, settings)
                reg = ants_register(to_ants(target, affine), _brain(native, mod, res), "syn", settings,
                                    str(Path(tmp) / f"{mod}_"), initial=str(linear[f"{mod}_affine"]))
                _copy(next(f for f in reg["fwdtransforms"] if f.endswith(".nii.gz")), outputs[f"{mod}_warp"])
                _copy(next(f for f in reg["invtransforms"] if f.endswith(".nii.gz")), outputs[f"{mod}_inverse_warp"])
                chain = [{"warp": Path(outputs[f"{mod}_warp"]).name,
                          "inverse_warp": Path(outputs[f"{mod}_inverse_warp"]).name},
                         {"affine": os.path.relpath(Path(linear[f"{mod}_affine"]).resolve(), base)}]
                extra = jacobian_stats(outputs[f"{mod}_warp"], grid, brain)
            extra["AffineDeterminant"] = chain_determinant(chain, base)
            _write_outputs(outputs, mod, "syn", native, chain, settings, time.perf_counter() - t0, grid, SPACE, extra)


def run_none(settings: dict, native: dict, outputs: dict, threads: int = 1) -> None:
    """``none`` variant of one session: reorient, resample and centre in the scanner's world; no alignment."""
    res = float(settings["resolution_mm"])
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(1, int(threads)))
    for mod in _order(native):
        t0 = time.perf_counter()
        img = nib.load(str(native[mod]))
        affine, shape = none_grid(img.affine, img.shape, res)
        write_itk_affine(outputs[f"{mod}_affine"], np.eye(4))
        chain = [{"affine": Path(outputs[f"{mod}_affine"]).name}]
        _write_outputs(outputs, mod, "none", native, chain, settings, time.perf_counter() - t0,
                       to_ants(np.zeros(shape, np.float32), affine), "scanner",
                       {"Note": "not in template space: the scan reoriented, resampled to the working "
                                "resolution and padded/cropped to the template's matrix, in its own world "
                                "coordinates (identity transform to the native scan)"})


def chain_determinant(chain: list[dict], base) -> float:
    """Volume scaling (|det|) of the affine steps of a chain: native mm^3 per grid mm^3."""
    det = 1.0
    for step in chain:
        if "affine" in step:
            det *= float(np.linalg.det(read_itk_affine(_resolve(base, step["affine"]))[:3, :3]))
    return round(abs(det), 6)


def _order(scans: dict) -> list[str]:
    """T1w before PET (the ``via_t1`` route needs the T1w's chain)."""
    return [m for m in ("T1w", "pet") if m in scans]


# settings each variant's job depends on (its params: a change reruns exactly these jobs)
_SETTINGS = {
    "linear": ("resolution_mm", "pet_route", "pet_template_fwhm_mm", "metric", "affine_iterations", "random_seed"),
    "syn": ("resolution_mm", "pet_route", "pet_template_fwhm_mm", "metric", "affine_iterations", "random_seed",
            "syn_metric", "syn_radius_mm", "syn_iterations", "syn_gradient_step", "syn_flow_sigma", "syn_total_sigma"),
    "none": ("resolution_mm",),
}
# what the extraction stage uses of the registration settings (the PET rigid, the registration fallback)
EXTRACTION_SETTINGS = _SETTINGS["syn"]


def variant_settings(variant: str, settings: dict) -> dict:
    """The part of the ``registration`` config that a variant's job depends on."""
    return {k: settings[k] for k in _SETTINGS[variant]}


def previous_variant(variant: str) -> str | None:
    """The variant whose outputs a variant's job reads: syn starts from linear's affine."""
    return {"linear": None, "syn": "linear", "none": None}[variant]


def run_variant(variant: str, settings: dict, native: dict, previous: dict, outputs: dict, threads: int = 1) -> None:
    """Entry point of the registration rules: one session, one variant, all modalities.

    ``native``: per modality the scan and its native mask (see :func:`run_linear`);
    ``previous``: the outputs of :func:`previous_variant`'s job.
    """
    if variant == "linear":
        run_linear(settings, native, outputs, threads)
    elif variant == "syn":
        run_syn(settings, native, previous, outputs, threads)
    elif variant == "none":
        run_none(settings, native, outputs, threads)
    else:
        raise ValueError(f"unknown registration variant {variant!r}; choose one of {VARIANTS}")
