"""Registration to the MNI152 2009 template with ANTs: variants ``none``, ``linear``, ``syn``.

Every variant writes, per scan, the image on the template grid at the working
resolution, the template's brain prior carried into that image, and the
transforms that relate it to the native scan (protocol: 004 study 4).

* ``none``: no alignment. The voxel array is reoriented to the closest RAS axes,
  resampled to the working resolution and padded/cropped around its centre to the
  template matrix; off-centre position and rotation stay. Its transform is that
  fixed reorient-and-centre affine. The brain prior still lands on the unaligned
  image: it is carried through the ``none`` affine and the inverse of a real
  registration of the same scan (``none_prior_from``, SyN by default).
* ``linear``: ANTs rigid + affine (antsRegistration ``Affine``).
* ``syn``: ANTs SyN, initialised with the scan's ``linear`` affine.

Scans are resampled to the working resolution (isotropic) before registration,
as the protocol resamples to the template's voxel size first. T1w scans are
registered to the bundled skull-stripped MNI152 T1. PET follows ``pet_route``:
``pet_template`` registers it the same way to a PET template made from the
bundled tissue maps (uptake GM 1, WM 0.3, CSF 0.04, blurred to the scanner
resolution), so PET-only datasets work; ``via_t1`` registers it rigidly to the
session's T1w and then follows the T1w's transforms.

Transform chains
----------------
A chain lists the transforms that map points of the template grid to points of
the native scan, in ``ants.apply_transforms`` order (first to last). Steps are
``{"affine": file}`` or ``{"warp": file, "inverse_warp": file}``, with paths
relative to the JSON sidecar that stores the chain. :func:`to_native_list` and
:func:`to_template_list` turn a chain into ``transformlist`` / ``whichtoinvert``
for either direction.
"""

from __future__ import annotations

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
from braindl.io import atomic_path, write_itk_affine, write_json, write_nifti

SPACE = templates.TEMPLATE_SPACE
VARIANTS = ("none", "linear", "syn")
FOLDER = {"T1w": "anat", "pet": "pet"}
_LPS = np.diag([-1.0, -1.0, 1.0])
# PET uptake per tissue class for the PET template (relative to grey matter)
PET_UPTAKE = {"gm": 1.0, "wm": 0.3, "csf": 0.04}


class RegistrationError(RuntimeError):
    """A registration that failed or diverged; the message names the scan."""


# ---------------------------------------------------------------------------
# paths (cheap: used at Snakefile parse time)
# ---------------------------------------------------------------------------


def registration_paths(root, sub: str, ses: str, variant: str, modalities, pet_route: str) -> dict[str, str]:
    """Every file one registration job writes for a session (``sub``/``ses`` without prefix).

    Keys: ``<mod>`` (image on the template grid), ``<mod>_json`` (sidecar with the
    chain), ``<mod>_prior`` (brain prior in that image), plus the transforms:
    ``<mod>_affine`` (none, linear), ``<mod>_warp`` / ``<mod>_inverse_warp`` (syn),
    and for ``via_t1`` PET ``pet_rigid`` (linear job) instead of PET's own.
    """
    out = {}
    for mod in modalities:
        d = Path(root) / f"sub-{sub}" / f"ses-{ses}" / FOLDER[mod]
        pre = f"sub-{sub}_ses-{ses}"
        out[mod] = d / f"{pre}_desc-{variant}_{mod}.nii.gz"
        out[f"{mod}_json"] = d / f"{pre}_desc-{variant}_{mod}.json"
        out[f"{mod}_prior"] = d / f"{pre}_desc-{variant}_label-brain_probseg.nii.gz"
        own = not (mod == "pet" and pet_route == "via_t1" and variant != "none")
        if own and variant in ("none", "linear"):
            out[f"{mod}_affine"] = d / f"{pre}_from-{mod}_to-{SPACE}_desc-{variant}_mode-image_xfm.mat"
        if own and variant == "syn":
            out[f"{mod}_warp"] = d / f"{pre}_from-{mod}_to-{SPACE}_desc-syn_mode-image_xfm.nii.gz"
            out[f"{mod}_inverse_warp"] = d / f"{pre}_from-{SPACE}_to-{mod}_desc-syn_mode-image_xfm.nii.gz"
        if not own and variant == "linear":
            out["pet_rigid"] = d / f"{pre}_from-pet_to-T1w_desc-rigid_mode-image_xfm.mat"
    return {k: str(v) for k, v in out.items()}


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
    """Template prior that skull stripping thresholds, on the working grid.

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


def ants_register(fixed, moving, kind: str, settings: dict, outprefix: str, initial: str | None = None) -> dict:
    """Run one antsRegistration; ``kind`` is ``rigid``, ``affine`` or ``syn``.

    ``affine`` is a rigid stage, then an affine stage started from it (as
    ANTs' own antsRegistrationSyN.sh does): a lone affine stage from the
    centre-of-mass start sometimes drifts into a scaled local optimum
    (|det| ~1.6 on a synthetic scan, similarity 0.25). The result holds one
    affine file that composes both (checked: one transform file). ``syn`` runs SyN only (``SyNOnly``) from
    ``initial``, the scan's affine.
    Transform files are written under ``outprefix``.
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
        # antspyx lists every file that starts with outprefix as a result: the rigid
        # stage's files must not share it (the affine output already composes them)
        p = Path(outprefix)
        rigid = ants.registration(fixed, moving, "Rigid", **{**linear, "outprefix": str(p.parent / f"rigidstage_{p.name}")})
        out = ants.registration(fixed, moving, "Affine", initial_transform=rigid["fwdtransforms"][0], **linear)
        if len(out["fwdtransforms"]) != 1:
            raise RegistrationError(f"expected one affine transform file, got {out['fwdtransforms']}")
        return out
    if kind == "syn":
        if initial is None:
            raise ValueError("syn registration needs the scan's affine as initial transform")
        return ants.registration(fixed, moving, "SyNOnly", initial_transform=initial, syn_metric=metric,
                                 reg_iterations=tuple(settings["syn_iterations"]), **common)
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


def _affine_determinant(path) -> float:
    from braindl.io import read_itk_affine

    return float(np.linalg.det(read_itk_affine(path)[:3, :3]))


# ---------------------------------------------------------------------------
# one job per session and variant
# ---------------------------------------------------------------------------


def _check_registered(data: np.ndarray, source, variant: str) -> None:
    if not np.isfinite(data).all() or float(np.abs(data).max()) == 0.0:
        raise RegistrationError(
            f"{source}: {variant} registration produced an empty image on the template grid "
            "(the scan is blank or the registration diverged)"
        )


def _write_outputs(outputs: dict, mod: str, variant: str, source, scan, chain: list[dict],
                   settings: dict, seconds: float, extra: dict | None = None) -> None:
    """Resample the scan through ``chain`` onto the template grid; write image and sidecar."""
    sidecar = Path(outputs[f"{mod}_json"])
    res = float(settings["resolution_mm"])
    files, invert = to_native_list(chain, sidecar.resolve().parent)
    warped = apply_chain(_grid(res), scan, files, invert, "linear")
    data, affine = from_ants(warped)
    _check_registered(data, source, variant)
    target, _ = _target(mod, settings)
    meta = {
        "Variant": variant,
        "Modality": mod,
        "Source": str(source),
        "Space": SPACE if variant != "none" else f"{SPACE} grid, not aligned",
        "ResolutionMM": res,
        "TemplateToNative": chain,
        "TransformConvention": "steps map template-grid points to native points, first to last "
                               "(ants.apply_transforms order); paths relative to this file",
        "ApplyTransforms": _apply_transforms_lists(chain, sidecar.resolve().parent),
        "SimilarityToTemplate": similarity(data, target, templates.load_template(res).brain_mask),
        "Seconds": round(seconds, 3),
        "RandomSeed": int(settings["random_seed"]),
        **(extra or {}),
    }
    write_nifti(outputs[mod], data.astype(np.float32), affine)
    write_json(sidecar, meta)


def _write_prior(outputs: dict, mod: str, res: float, transformlist=None, whichtoinvert=None) -> None:
    """The template's brain prior on the variant's image (through ``transformlist`` if given)."""
    prior = brain_prior(mod, res)
    affine = templates.load_template(res).affine
    if transformlist:
        warped = apply_chain(_grid(res), to_ants(prior, affine), transformlist, whichtoinvert, "linear")
        prior, affine = from_ants(warped)
    write_nifti(outputs[f"{mod}_prior"], np.clip(prior, 0, 1).astype(np.float32), affine)


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


def _via_t1(mod: str, settings: dict) -> bool:
    return mod == "pet" and settings["pet_route"] == "via_t1"


def run_linear(settings: dict, scans: dict, outputs: dict, threads: int = 1) -> None:
    """``linear`` variant of one session: affine to the template (``via_t1`` PET: rigid to the T1w)."""
    res = float(settings["resolution_mm"])
    working = {}
    with ants_settings(settings["random_seed"], threads), tempfile.TemporaryDirectory() as tmp:
        for mod in _order(scans):
            t0 = time.perf_counter()
            scan = load_scan(scans[mod])
            working[mod] = _working(scan, res)
            base = Path(outputs[f"{mod}_json"]).resolve().parent
            prefix = str(Path(tmp) / f"{mod}_")
            if _via_t1(mod, settings):
                reg = ants_register(working["T1w"], working[mod], "rigid", settings, prefix)
                own = outputs["pet_rigid"]
                t1_chain, t1_base = read_chain(outputs["T1w_json"])
                chain = _relative(t1_chain, t1_base, base) + [{"affine": Path(own).name}]
            else:
                target, affine = _target(mod, settings)
                reg = ants_register(to_ants(target, affine), working[mod], "affine", settings, prefix)
                own = outputs[f"{mod}_affine"]
                chain = [{"affine": Path(own).name}]
            _copy(reg["fwdtransforms"][0], own)
            _write_outputs(outputs, mod, "linear", scans[mod], scan, chain, settings,
                           time.perf_counter() - t0, {"AffineDeterminant": _affine_determinant(own)})
            _write_prior(outputs, mod, res)


def run_syn(settings: dict, scans: dict, linear: dict, outputs: dict, threads: int = 1) -> None:
    """``syn`` variant of one session: SyN from the ``linear`` affine (``linear``: that job's outputs)."""
    res = float(settings["resolution_mm"])
    with ants_settings(settings["random_seed"], threads), tempfile.TemporaryDirectory() as tmp:
        for mod in _order(scans):
            t0 = time.perf_counter()
            scan = load_scan(scans[mod])
            base = Path(outputs[f"{mod}_json"]).resolve().parent
            if _via_t1(mod, settings):
                t1_chain, t1_base = read_chain(outputs["T1w_json"])
                rigid = os.path.relpath(Path(linear["pet_rigid"]).resolve(), base)
                chain = _relative(t1_chain, t1_base, base) + [{"affine": rigid}]
            else:
                target, affine = _target(mod, settings)
                reg = ants_register(to_ants(target, affine), _working(scan, res), "syn", settings,
                                    str(Path(tmp) / f"{mod}_"), initial=str(linear[f"{mod}_affine"]))
                _copy(next(f for f in reg["fwdtransforms"] if f.endswith(".nii.gz")), outputs[f"{mod}_warp"])
                _copy(next(f for f in reg["invtransforms"] if f.endswith(".nii.gz")), outputs[f"{mod}_inverse_warp"])
                chain = [{"warp": Path(outputs[f"{mod}_warp"]).name,
                          "inverse_warp": Path(outputs[f"{mod}_inverse_warp"]).name},
                         {"affine": os.path.relpath(Path(linear[f"{mod}_affine"]).resolve(), base)}]
            _write_outputs(outputs, mod, "syn", scans[mod], scan, chain, settings, time.perf_counter() - t0)
            _write_prior(outputs, mod, res)


def run_none(settings: dict, scans: dict, reference: dict, outputs: dict, threads: int = 1) -> None:
    """``none`` variant of one session: reorient, resample and centre; no alignment.

    ``reference``: sidecars (``<mod>_json``) of the registration whose inverse
    carries the brain prior onto the unaligned image.
    """
    res = float(settings["resolution_mm"])
    tpl = templates.load_template(res)
    with ants_settings(settings["random_seed"], threads):
        for mod in _order(scans):
            t0 = time.perf_counter()
            img = nib.load(str(scans[mod]))
            write_itk_affine(outputs[f"{mod}_affine"], none_affine(img.affine, img.shape, tpl.affine,
                                                                    tpl.brain_mask.shape))
            chain = [{"affine": Path(outputs[f"{mod}_affine"]).name}]
            _write_outputs(outputs, mod, "none", scans[mod], load_scan(scans[mod]), chain, settings,
                           time.perf_counter() - t0, {"PriorFrom": settings["none_prior_from"]})
            to_native, inv1 = to_native_list(chain, Path(outputs[f"{mod}_json"]).resolve().parent)
            to_tpl, inv2 = to_template_list(*read_chain(reference[f"{mod}_json"]))
            _write_prior(outputs, mod, res, to_native + to_tpl, inv1 + inv2)


def _order(scans: dict) -> list[str]:
    """T1w before PET (the ``via_t1`` route needs the T1w's chain)."""
    return [m for m in ("T1w", "pet") if m in scans]


# settings each variant's job depends on (its params: a change reruns exactly these jobs)
_SETTINGS = {
    "linear": ("resolution_mm", "pet_route", "pet_template_fwhm_mm", "metric", "affine_iterations", "random_seed"),
    "syn": ("resolution_mm", "pet_route", "pet_template_fwhm_mm", "metric", "affine_iterations", "random_seed",
            "syn_iterations"),
    "none": ("resolution_mm", "pet_route", "pet_template_fwhm_mm", "none_prior_from", "random_seed"),
}


def variant_settings(variant: str, settings: dict) -> dict:
    """The part of the ``registration`` config that a variant's job depends on."""
    return {k: settings[k] for k in _SETTINGS[variant]}


def previous_variant(variant: str, settings: dict) -> str | None:
    """The variant whose outputs a variant's job reads: syn starts from linear, none takes its prior from
    ``none_prior_from``."""
    return {"linear": None, "syn": "linear", "none": settings["none_prior_from"]}[variant]


def run_variant(variant: str, settings: dict, scans: dict, previous: dict, outputs: dict, threads: int = 1) -> None:
    """Entry point of the registration rules: one session, one variant, all modalities."""
    if variant == "linear":
        run_linear(settings, scans, outputs, threads)
    elif variant == "syn":
        run_syn(settings, scans, previous, outputs, threads)
    elif variant == "none":
        run_none(settings, scans, previous, outputs, threads)
    else:
        raise ValueError(f"unknown registration variant {variant!r}; choose one of {VARIANTS}")
