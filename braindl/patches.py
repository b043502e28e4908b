"""Patches and quality labels of the dose reconstructions (002).

- Count levels: :func:`level_label` (file names), quality groups
  (:func:`group_of`, :func:`active_groups`, :func:`group_ranks`) and the levels scored per patient
  (:func:`scored_levels`: one per group, as 002's clinicians saw 3 of 7).
- :func:`extract_patches`: random 2D patches from the three planes of a
  reconstruction, background patches (mean below ``background_fraction`` of
  the volume mean) rejected, a fixed number kept per plane; one array file per
  reconstruction (:func:`run_patches`).
- Quality labels: three clinical scores per reconstruction (global quality
  rating ``gqr``, pattern recognition ``pr``, diagnostic confidence ``dc``;
  0 to 3 in steps of 0.5). Real users provide them (:func:`read_scores`); for
  the synthetic cohort :func:`synthetic_scores` derives them by
  :data:`SCORE_RULE` from the count level's quality group and a measured
  image-quality index (SSIM against the full-count reconstruction).
- :func:`quality_folds`: fixed test patients, leave-``n``-patients-out
  validation folds, nested training pools.

No torch here: the workflow imports this module when it parses.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from braindl.io import atomic_path, write_json, write_tsv

METRICS = ("gqr", "pr", "dc")
PLANES = ("sagittal", "coronal", "axial")
# Synthetic labels: score = 3 * (w_group * g + w_index * q), rounded to 0.5, where g is the rank of the
# level's quality group scaled to [0, 1] (groups ordered by count level: low 0, medium 0.5, high 1) and q
# the SSIM of the reconstruction against the full-count one over the head (quality_index). GQR is dominated by noise (the index), pattern recognition by the count
# level; diagnostic confidence weighs both equally.
SCORE_RULE = {"gqr": (0.3, 0.7), "pr": (0.7, 0.3), "dc": (0.5, 0.5)}


class DoseError(ValueError):
    """Input the dose branch cannot use; the message names the file and the problem."""


def level_label(level: float) -> str:
    """BIDS-safe label of a count level in percent: 0.5 -> '0p5', 10 -> '10'."""
    return f"{float(level):g}".replace(".", "p")


def half_round(x) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, dtype=float) * 2.0) / 2.0, 0.0, 3.0)


# ---- patches ------------------------------------------------------------------------------------------
def extract_patches(vol: np.ndarray, size: int, candidates: int, keep: int, background_fraction: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Patches ``(n, size, size)`` and their plane index (0 sagittal, 1 coronal, 2 axial).

    Per plane ``candidates`` patches at random positions (a random slice, a
    random corner); those with a mean below ``background_fraction`` x the
    volume mean are background; ``keep`` of the others are drawn at random
    (all of them when fewer). Volumes smaller than ``size`` are zero padded.
    """
    vol = np.asarray(vol, dtype=np.float32)
    threshold = float(background_fraction) * float(vol.mean())
    pad = [(0, max(0, size - s)) for s in vol.shape]
    v = np.pad(vol, pad)
    out, planes, stats = [], [], {}
    for axis, name in enumerate(PLANES):
        plane_axes = [a for a in range(3) if a != axis]
        h, w = v.shape[plane_axes[0]], v.shape[plane_axes[1]]
        k = rng.integers(0, v.shape[axis], candidates)
        i = rng.integers(0, h - size + 1, candidates)
        j = rng.integers(0, w - size + 1, candidates)
        moved = np.moveaxis(v, axis, 0)
        cand = np.stack([moved[kk, ii:ii + size, jj:jj + size] for kk, ii, jj in zip(k, i, j)])
        fg = np.flatnonzero(cand.mean((1, 2)) >= threshold)
        pick = rng.choice(fg, size=min(keep, len(fg)), replace=False) if len(fg) else fg
        out.append(cand[np.sort(pick)])
        planes += [axis] * len(pick)
        stats[name] = {"candidates": int(candidates), "foreground": int(len(fg)), "kept": int(len(pick))}
    patches = np.concatenate(out) if out else np.zeros((0, size, size), np.float32)
    return patches, np.asarray(planes, dtype=np.int8), stats


def run_patches(recon_nii, settings: dict, seed: int, out_npy, out_json) -> dict:
    """Patches of one reconstruction: ``out_npy`` ``(n, size, size)`` float16, planes in the JSON."""
    vol = np.asarray(nib.load(str(recon_nii)).dataobj, dtype=np.float32)
    rng = np.random.default_rng(seed)
    patches, planes, stats = extract_patches(vol, int(settings["patch_size"]), int(settings["candidates_per_plane"]),
                                             int(settings["patches_per_plane"]),
                                             float(settings["background_fraction"]), rng)
    if len(patches) == 0:
        raise DoseError(f"{recon_nii}: no patch of {settings['patch_size']} voxels passed the background "
                        f"threshold ({settings['background_fraction']} x volume mean)")
    with atomic_path(out_npy) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, patches.astype(np.float16))
    meta = {"Source": str(recon_nii), "PatchSize": int(settings["patch_size"]), "Planes": planes.tolist(),
            "PlaneNames": list(PLANES), "PerPlane": stats, "Seed": int(seed)}
    write_json(out_json, meta)
    return meta


def run_scan_patches(recons: dict, settings: dict, seeds: dict, outs: dict) -> dict:
    """:func:`run_patches` for every count level of one scan in one process (rule dose_patches): ``recons``,
    ``seeds`` and ``outs`` (``(out_npy, out_json)``) keyed by the same level labels, each level's patches
    the same as from its own call. Mismatched keys are refused before any reconstruction is read. Returns
    the sidecars by level."""
    if not (set(recons) == set(seeds) == set(outs)) or not recons:
        raise DoseError(f"dose patches of one scan: levels differ or are missing: reconstructions {sorted(recons)}, "
                        f"seeds {sorted(seeds)}, outputs {sorted(outs)}")
    return {lv: run_patches(recons[lv], settings, seeds[lv], *outs[lv]) for lv in recons}


# ---- labels -------------------------------------------------------------------------------------------
def active_groups(levels, groups: dict) -> dict[str, list[float]]:
    """The groups restricted to the configured ``levels``; groups without any are left out (a config
    file merged into config.yaml cannot delete a group, only leave it without levels)."""
    levels = [float(v) for v in levels]
    out = {g: [float(m) for m in members if float(m) in levels] for g, members in groups.items()}
    return {g: members for g, members in out.items() if members}


def group_of(levels, groups: dict) -> dict[float, str]:
    """Map each count level to its quality group; every level must be in exactly one group."""
    out = {}
    for name, members in groups.items():
        for m in members:
            if float(m) in out:
                raise DoseError(f"config: dose level {m} is in two groups ({out[float(m)]}, {name})")
            out[float(m)] = name
    missing = [v for v in levels if float(v) not in out]
    if missing:
        raise DoseError(f"config: dose levels {missing} belong to no group of dose.groups")
    return out


def scored_levels(participant: str, levels, groups: dict, seed: int) -> list[float]:
    """The levels scored for one patient: one level per group, drawn at random (002: 3 of 7)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(participant.encode())])
    return sorted(float(rng.choice(present)) for present in active_groups(levels, groups).values())


def quality_index(recon: np.ndarray, reference: np.ndarray, head: float = 0.1) -> float:
    """SSIM of a [0, 1] reconstruction against the full-count one (scikit-image, data range 1),
    averaged over the head: the voxels where the reference exceeds ``head``."""
    from skimage.metrics import structural_similarity

    ref = np.asarray(reference, np.float64)
    _, ssim_map = structural_similarity(np.asarray(recon, np.float64), ref, data_range=1.0, full=True)
    mask = ref > head
    return float(ssim_map[mask].mean() if mask.any() else ssim_map.mean())


def group_ranks(levels, groups: dict) -> dict[str, float]:
    """Rank of each quality group with configured levels, scaled to [0, 1], groups ordered by their
    mean count level."""
    groups = active_groups(levels, groups)
    order = sorted(groups, key=lambda g: float(np.mean(groups[g])))
    return {g: i / max(len(order) - 1, 1) for i, g in enumerate(order)}


def synthetic_scores(rows: list[dict], groups: dict, levels) -> pd.DataFrame:
    """Scores by :data:`SCORE_RULE` for ``rows`` of ``participant_id, session_id, level, recon, reference``."""
    ranks = group_ranks(levels, groups)
    g_of = group_of(levels, groups)
    out = []
    for r in rows:
        q = quality_index(nib.load(str(r["recon"])).get_fdata(), nib.load(str(r["reference"])).get_fdata())
        group = g_of[float(r["level"])]
        g = ranks[group]
        scores = {m: float(half_round(3.0 * (wg * g + wq * q))) for m, (wg, wq) in SCORE_RULE.items()}
        out.append({"participant_id": r["participant_id"], "session_id": r["session_id"],
                    "level": float(r["level"]), "group": group, "ssim": round(q, 4), **scores})
    return pd.DataFrame(out)


def run_scores(rows: list[dict], groups: dict, levels, scores_tsv, out_tsv) -> None:
    """The scores table of the branch: a user's ``scores_tsv`` (validated), else :func:`synthetic_scores`."""
    if scores_tsv:
        t = read_scores(scores_tsv, levels)
        g_of = group_of(levels, groups)
        t = t.assign(group=[g_of[float(v)] for v in t["level"]])
    else:
        t = synthetic_scores(rows, groups, levels)
    write_tsv(out_tsv, t)


def read_scores(path, levels) -> pd.DataFrame:
    """A user's scores table: ``participant_id, session_id, level`` (percent) and ``gqr, pr, dc``."""
    path = Path(path)
    if not path.is_file():
        raise DoseError(f"{path}: dose scores table not found")
    t = pd.read_csv(path, sep="\t", dtype={"participant_id": str, "session_id": str})
    missing = [c for c in ("participant_id", "session_id", "level", *METRICS) if c not in t.columns]
    if missing:
        raise DoseError(f"{path}: missing columns {missing}")
    bad = t[~t["level"].astype(float).isin([float(v) for v in levels])]
    if len(bad):
        raise DoseError(f"{path}: levels {sorted(set(bad['level']))} are not among dose.levels {list(levels)}")
    for m in METRICS:
        v = pd.to_numeric(t[m], errors="coerce")
        if v.isna().any() or ((v < 0) | (v > 3) | (v * 2 != np.round(v * 2))).any():
            raise DoseError(f"{path}: column {m} must hold scores 0 to 3 in steps of 0.5")
    dup = t.duplicated(["participant_id", "session_id", "level"])
    if dup.any():
        raise DoseError(f"{path}: duplicate rows {t[dup][['participant_id', 'session_id', 'level']].values.tolist()}")
    return t.assign(level=t["level"].astype(float))


# ---- folds and training -------------------------------------------------------------------------------
def quality_folds(patients: list[str], n_test: int, n_validation: int, n_folds: int, seed: int) -> list[dict]:
    """Fixed test patients and leave-``n_validation``-out folds over the rest.

    The patients are shuffled once (``seed``); the first ``n_test`` are the
    test set of every fold; the folds validate on consecutive groups of
    ``n_validation`` of the rest (disjoint while they last: 002's 6 folds of 2 on
    10 patients cannot all be), then on groups of a reshuffle of the rest, never
    on a group an earlier fold had; each training pool is the others in shuffled
    order, so a training set of ``n`` patients is the pool's first ``n`` (nested sizes).
    """
    from math import comb

    ids = list(np.random.default_rng(seed).permutation(sorted(patients)))
    test, rest = ids[:n_test], ids[n_test:]
    if len(rest) < n_validation + 1:
        raise DoseError(f"dose: {len(patients)} patients leave {len(rest)} after {n_test} test patients; "
                        f"need {n_validation} for validation and at least one for training")
    if n_folds > comb(len(rest), n_validation):
        raise DoseError(f"dose.training.folds: {n_folds} folds need {n_folds} different validation groups of "
                        f"{n_validation}; {len(rest)} patients have {comb(len(rest), n_validation)}")
    folds, used, order, start, reshuffle = [], set(), list(rest), 0, 0
    while len(folds) < n_folds:
        if start + n_validation > len(order):
            reshuffle += 1
            order = list(np.random.default_rng([int(seed), reshuffle]).permutation(rest))
            start = 0
        val = order[start:start + n_validation]
        start += n_validation
        if frozenset(val) in used:
            continue
        used.add(frozenset(val))
        folds.append({"fold": len(folds), "test": test, "validation": val, "pool": [p for p in rest if p not in val]})
    return folds
