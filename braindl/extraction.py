"""Bias-field correction and one native-space brain mask per scan (stage ``extraction``).

Every registration variant is skull-stripped with the same subject-specific
mask: it is computed here once, in the scan's own space, and each variant
carries it through its own transform (``none``: resampling only). The thesis
(004 study 4) ran one subject-specific tool, FSL BET, identically after every
variant, so that the comparison of variants is not confounded by how the brain
was cut out.

T1w (``skullstrip.method``):

* ``deepbet``: the published network of the ``deepbet`` package (Fisch et al.
  2024, MIT licence). Its wheel ships TorchScript weights, so it runs offline;
  it uses the job's device and threads.
* ``registration``: the template's brain mask carried to the scan through the
  inverse of a registration of that scan (affine of the head, then affine and
  SyN of the head masked by the dilated first estimate), for users who cannot
  install deepbet. Same outputs.

Bias-field correction (N4, Tustison et al. 2010, ``ants.n4_bias_field_correction``)
of T1w, when ``skullstrip.n4.enabled``: the field is estimated inside the brain
mask on the raw scan (without a mask N4 fits the scalp too, and took 60 s a scan
here); that corrected image (``desc-preproc``) is what registration and every
later stage read. The registration route of extraction runs a first N4 pass in
the head (ANTs' foreground mask) before it registers; deepbet, which
normalises its input by quantiles, found the same masks on raw and corrected
scans, so it reads the raw scan.

PET: ``via_t1`` (the default route) carries the session's T1w mask through the
PET-to-T1w rigid, which is estimated here and reused by the registration of
every variant; PET-only datasets (``pet_template`` route) threshold the
template's grey + white matter + CSF probability carried through a
registration of the PET to the PET template (000's tissue-probability
approach).

A mask that is empty, or whose volume lies outside ``skullstrip.brain_volume_ml``
(a blank scan, pure noise, a PET filed as T1w), stops the job with a message
naming the scan: no absurd mask is passed on.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from braindl import registration
from braindl.io import write_json, write_nifti

METHODS = ("deepbet", "registration")


class ExtractionError(RuntimeError):
    """A brain extraction that failed or gave an implausible mask; the message names the scan."""


# ---------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a binary mask, holes filled."""
    mask = np.asarray(mask) > 0
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask.astype(np.uint8)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    mask = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(mask).astype(np.uint8)


def mask_volume_ml(mask: np.ndarray, affine: np.ndarray) -> float:
    return float(np.count_nonzero(mask)) * abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0


def check_mask(mask: np.ndarray, affine: np.ndarray, source, bounds) -> float:
    """The mask's volume in ml; :class:`ExtractionError` naming ``source`` when it is empty or implausible."""
    lo, hi = (float(b) for b in bounds)
    volume = mask_volume_ml(mask, affine)
    if volume == 0:
        raise ExtractionError(f"{source}: brain extraction found no brain (empty mask); "
                              "is the scan blank, or not the modality it is filed as?")
    if not lo <= volume <= hi:
        raise ExtractionError(
            f"{source}: brain extraction gave a {volume:.0f} ml mask, outside the plausible "
            f"{lo:.0f}-{hi:.0f} ml (skullstrip.brain_volume_ml); the scan may be blank, noise, "
            "or not the modality it is filed as; exclude it or try skullstrip.method registration")
    return volume


def _native(scan) -> tuple[np.ndarray, np.ndarray]:
    return registration.from_ants(scan)


def deepbet_mask(data: np.ndarray, affine: np.ndarray, device: str = "auto", threshold: float = 0.5) -> np.ndarray:
    """deepbet's brain mask of a T1w volume (array and RAS affine), in the array's own voxel order.

    ``device``: ``auto`` (CUDA when present), ``cpu`` or ``cuda``. The network and
    its weights ship in the ``deepbet`` wheel (``BrainExtraction``): nothing is downloaded.
    """
    import torch
    from deepbet import BrainExtraction

    if device == "cuda" and not torch.cuda.is_available():
        raise ExtractionError("skullstrip.device is cuda but no CUDA device is available")
    bet = BrainExtraction(no_gpu=device == "cpu" or not torch.cuda.is_available())
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    _, mask_img, _ = bet.run(img, threshold=float(threshold))
    return np.asarray(mask_img.dataobj) > 0


def n4(scan, mask, settings: dict):
    """N4 bias-field correction of an ANTs image, the field fitted inside ``mask`` (an ANTs image or None)."""
    import ants

    n4s = settings["n4"]
    return ants.n4_bias_field_correction(
        scan, mask=mask, shrink_factor=int(n4s["shrink_factor"]),
        convergence={"iters": [int(i) for i in n4s["iterations"]], "tol": float(n4s["tolerance"])},
        spline_param=float(n4s["spline_distance_mm"]))


def registration_mask(scan, modality: str, reg_settings: dict, threshold: float, tmp,
                      dilation_mm: float = 10.0) -> np.ndarray:
    """The template's brain prior carried to ``scan`` through the inverse of a registration of it.

    1. affine of the whole head to the (skull-stripped) template;
    2. the template brain, dilated by ``dilation_mm``, carried back masks the head;
    3. affine again from (1), then SyN (``registration`` settings), of the masked head;
    4. the prior carried back through (3), above ``threshold``, largest component.
    Returns the mask on the scan's own voxel grid.
    """
    import ants

    res = float(reg_settings["resolution_mm"])
    target_arr, tpl_affine = registration.template_volume(modality, res, float(reg_settings["pet_template_fwhm_mm"]))
    target = registration.to_ants(target_arr, tpl_affine)
    prior = registration.brain_prior(modality, res)
    working = registration._working(scan, res)
    first = registration.ants_register(target, working, "affine", reg_settings, str(Path(tmp) / "bet1_"))
    grow = ndimage.binary_dilation(prior > 0.5, iterations=max(1, int(round(dilation_mm / res))))
    back = registration.apply_chain(working, registration.to_ants(grow.astype(np.float32), tpl_affine),
                                    first["fwdtransforms"], [True], "linear")
    masked = working * (back > 0.5)
    second = registration.ants_register(target, masked, "affine", reg_settings, str(Path(tmp) / "bet2_"),
                                        initial=first["fwdtransforms"][0])
    syn = registration.ants_register(target, masked, "syn", reg_settings, str(Path(tmp) / "bet3_"),
                                     initial=second["fwdtransforms"][0])
    warp_inv = next(f for f in syn["invtransforms"] if f.endswith(".nii.gz"))
    carried = ants.apply_transforms(scan, registration.to_ants(prior, tpl_affine),
                                    [second["fwdtransforms"][0], warp_inv], whichtoinvert=[True, False],
                                    interpolator="linear")
    return largest_component(carried.numpy() > float(threshold)).astype(bool)


# ---------------------------------------------------------------------------
# one job per session
# ---------------------------------------------------------------------------


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def extract_t1w(path, settings: dict, reg_settings: dict, threads: int, tmp) -> dict:
    """Bias-corrected T1w and its brain mask: ``{"image", "mask", "affine", "meta"}``."""
    import ants

    t0 = time.perf_counter()
    raw = registration.load_scan(path)
    values = raw.numpy()
    if not np.isfinite(values).all() or float(values.std()) == 0.0:
        raise ExtractionError(f"{path}: the image is blank or constant; brain extraction found no brain")
    use_n4 = bool(settings["n4"]["enabled"])
    method = settings["method"]
    # deepbet normalises by quantiles and found the same masks on raw and corrected scans (Dice
    # 0.9855 / 0.9855, 0.9837 / 0.9834 on two synthetic T1w); the registration route needs the correction
    first = n4(raw, ants.get_mask(raw), settings) if use_n4 and method == "registration" else raw
    t_n4 = time.perf_counter() - t0
    data, affine = _native(first)
    t1 = time.perf_counter()
    if method == "deepbet":
        device = _pick_device(settings["device"])
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(max(1, int(threads)))
        try:
            mask = deepbet_mask(data, affine, device, settings["deepbet_threshold"])
        except (ValueError, AssertionError) as err:  # deepbet's own checks: no foreground, no component
            raise ExtractionError(f"{path}: brain extraction (deepbet) found no brain ({err})") from err
        finally:
            torch.set_num_threads(before)
    elif method == "registration":
        device = "cpu"
        mask = registration_mask(first, "T1w", reg_settings, 0.5, tmp)
    else:
        raise ValueError(f"unknown skullstrip.method {method!r}; choose one of {METHODS}")
    mask = largest_component(mask)
    t_bet = time.perf_counter() - t1
    volume = check_mask(mask, affine, path, settings["brain_volume_ml"])
    t2 = time.perf_counter()
    final = n4(raw, registration.to_ants(mask.astype(np.float32), affine), settings) if use_n4 else raw
    t_n4 += time.perf_counter() - t2
    image, _ = _native(final)
    meta = {"Method": method, "Device": device, "BiasCorrected": use_n4,
            "N4": settings["n4"] if use_n4 else None, "BrainVolumeML": round(volume, 2),
            "SecondsN4": round(t_n4, 3), "SecondsExtraction": round(t_bet, 3)}
    return {"image": image, "mask": mask, "affine": affine, "meta": meta}


def extract_pet(path, t1_preproc, t1_mask, t1_affine, settings: dict, reg_settings: dict, tmp,
                rigid_out=None) -> dict:
    """PET brain mask: the T1w's through the PET-to-T1w rigid (``via_t1``), else the tissue route."""
    t0 = time.perf_counter()
    scan = registration.load_scan(path)
    _, affine = _native(scan)
    res = float(reg_settings["resolution_mm"])
    if rigid_out is not None:
        t1 = registration.to_ants(t1_preproc, t1_affine)
        reg = registration.ants_register(registration._working(t1, res), registration._working(scan, res),
                                         "rigid", reg_settings, str(Path(tmp) / "rigid_"))
        registration._copy(reg["fwdtransforms"][0], rigid_out)
        carried = registration.apply_chain(scan, registration.to_ants(t1_mask.astype(np.float32), t1_affine),
                                           [str(rigid_out)], [True], "linear")
        mask = largest_component(carried.numpy() > 0.5)
        method = "via_t1"
    else:
        mask = registration_mask(scan, "pet", reg_settings, float(settings["pet_tissue_threshold"]), tmp)
        method = "tissue_probability"
    volume = check_mask(mask, affine, path, settings["brain_volume_ml"])
    return {"mask": mask, "affine": affine,
            "meta": {"Method": method, "BrainVolumeML": round(volume, 2),
                     "SecondsExtraction": round(time.perf_counter() - t0, 3)}}


def run_extraction(settings: dict, reg_settings: dict, scans: dict, outputs: dict, threads: int = 1) -> None:
    """Entry point of the ``extract`` rule: one session, every modality.

    ``settings``: the ``skullstrip`` config; ``reg_settings``: the ``registration``
    config (working resolution, metric and iterations of the registrations used
    here); ``scans``: native scan per modality; ``outputs``: :func:`braindl.derivatives.extraction`.
    """
    via_t1 = "pet_rigid" in outputs
    with registration.ants_settings(reg_settings["random_seed"], threads), tempfile.TemporaryDirectory() as tmp:
        t1 = None
        if "T1w" in scans:
            t1 = extract_t1w(scans["T1w"], settings, reg_settings, threads, tmp)
            write_nifti(outputs["T1w_preproc"], t1["image"].astype(np.float32), t1["affine"])
            write_nifti(outputs["T1w_mask"], t1["mask"], t1["affine"], np.uint8)
            write_json(outputs["T1w_json"], {"Source": str(scans["T1w"]), "Modality": "T1w", **t1["meta"]})
        if "pet" in scans:
            if via_t1 and t1 is None:
                raise ValueError("registration.pet_route via_t1 needs the session's T1w")
            pet = extract_pet(scans["pet"], t1["image"] if via_t1 else None, t1["mask"] if via_t1 else None,
                              t1["affine"] if via_t1 else None, settings, reg_settings, tmp,
                              outputs.get("pet_rigid") if via_t1 else None)
            write_nifti(outputs["pet_mask"], pet["mask"], pet["affine"], np.uint8)
            write_json(outputs["pet_json"], {"Source": str(scans["pet"]), "Modality": "pet", **pet["meta"]})


def native_volume_ml(sidecar) -> float:
    """The native brain volume an extraction sidecar records."""
    import json

    return float(json.loads(Path(sidecar).read_text())["BrainVolumeML"])



def registration_inputs(outputs: dict, scans: dict) -> dict:
    """What the registration jobs read of a session: per modality the scan they register (the
    bias-corrected T1w, the raw PET) and its native mask (``<mod>_mask``), and ``pet_rigid`` on the
    ``via_t1`` route. ``outputs``: :func:`braindl.derivatives.extraction`; ``scans``: the raw scans."""
    out = {}
    for m in scans:
        out[m] = outputs["T1w_preproc"] if m == "T1w" else scans[m]
        out[f"{m}_mask"] = outputs[f"{m}_mask"]
    if "pet_rigid" in outputs:
        out["pet_rigid"] = outputs["pet_rigid"]
    return out


_RIGID = ("resolution_mm", "metric", "affine_iterations", "random_seed")


def job_settings(skullstrip: dict, reg_settings: dict, modalities) -> dict:
    """What an extraction job depends on (its params: a change reruns exactly these jobs and what
    follows): the ``skullstrip`` settings its modalities use, and the registration settings of the
    PET-to-T1w rigid (``via_t1``) or of the registration route."""
    mods = set(modalities)
    keys = {"brain_volume_ml"}
    reg_keys = {"random_seed"}
    if "T1w" in mods:
        keys |= {"method", "n4"}
        if skullstrip["method"] == "deepbet":
            keys |= {"deepbet_threshold", "device"}
        else:
            reg_keys |= set(registration.EXTRACTION_SETTINGS)
    if "pet" in mods:
        if reg_settings["pet_route"] == "via_t1":
            reg_keys |= set(_RIGID) | {"pet_route"}
        else:
            keys.add("pet_tissue_threshold")
            reg_keys |= set(registration.EXTRACTION_SETTINGS)
    return {"skullstrip": {k: skullstrip[k] for k in sorted(keys)},
            "registration": {k: reg_settings[k] for k in sorted(reg_keys)}}
