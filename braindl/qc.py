"""Registration and skull-stripping QC table per variant, with outlier flags.

The rows come from :func:`braindl.skullstrip.qc_row` (one per scan). A scan is
flagged when, within its variant and modality,

* its similarity to the template is a low outlier (robust z below
  ``-outlier_z``, median and MAD), or, for the aligned variants, below
  ``min_similarity`` (a failed or diverged registration: blank image, noise);
* its native brain volume is an outlier either way (robust z beyond ``outlier_z``);
* its affine scaling is implausible (|det| outside ``determinant_range``).

The z-scores use a floor on the scale (``similarity_scale_floor`` in
correlation units, ``volume_scale_floor`` as a fraction of the median volume):
registrations that all succeed agree so closely (SyN: correlations within
0.01) that a MAD-based z would call a scan 0.02 below the median an outlier.

The two outlier tests need a reference: a median and MAD from a handful of
scans (and sessions of one subject look alike) would flag ordinary scans, so
groups smaller than ``min_group_size`` get no z-scores (NaN) and only the
absolute checks (similarity floor, determinant range).

Flagged scans keep their files; the ``qc_pass`` column tells later stages to
leave them out, and ``qc_reasons`` says why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from braindl.io import write_tsv


def robust_z(values: pd.Series, min_scale: float = 0.0) -> pd.Series:
    """(x - median) / max(1.4826 MAD, ``min_scale``); the standard deviation stands in when that is 0."""
    x = values.astype(float)
    med = x.median()
    scale = max(1.4826 * (x - med).abs().median(), float(min_scale))
    if not np.isfinite(scale) or scale == 0:
        scale = x.std(ddof=0)
    if not np.isfinite(scale) or scale == 0:
        return pd.Series(0.0, index=x.index)
    return (x - med) / scale


def flag_outliers(table: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """Add ``similarity_z``, ``brain_volume_z``, ``qc_pass`` and ``qc_reasons``."""
    out = table.copy()
    z_thr = float(settings["outlier_z"])
    lo, hi = settings["determinant_range"]
    out["similarity_z"] = np.nan
    out["brain_volume_z"] = np.nan
    for _, idx in out.groupby(["variant", "modality"]).groups.items():
        if len(idx) < int(settings["min_group_size"]):
            continue
        sim, vol = out.loc[idx, "similarity"], out.loc[idx, "brain_volume_ml"]
        out.loc[idx, "similarity_z"] = robust_z(sim, settings["similarity_scale_floor"]).round(3)
        out.loc[idx, "brain_volume_z"] = robust_z(vol, settings["volume_scale_floor"] * vol.median()).round(3)
    reasons = []
    for row in out.itertuples():
        why = []
        if row.variant != "none" and row.similarity < float(settings["min_similarity"]):
            why.append(f"similarity {row.similarity:.2f} below {settings['min_similarity']} (registration failed)")
        if row.similarity_z < -z_thr:  # NaN compares False
            why.append(f"similarity outlier (z {row.similarity_z:.1f})")
        if abs(row.brain_volume_z) > z_thr:
            why.append(f"brain volume outlier (z {row.brain_volume_z:.1f})")
        if row.variant != "none" and not (lo <= row.affine_determinant <= hi):
            why.append(f"affine scaling {row.affine_determinant:.2f} outside [{lo}, {hi}]")
        reasons.append("; ".join(why))
    out["qc_reasons"] = reasons
    out["qc_pass"] = out["qc_reasons"] == ""
    return out


def run_qc_table(settings: dict, rows: list, out_tsv) -> pd.DataFrame:
    """Gather the per-session QC rows of one variant, flag outliers, write the table."""
    table = pd.concat([pd.read_csv(p, sep="\t") for p in rows], ignore_index=True)
    table = flag_outliers(table, settings).sort_values(["participant_id", "session_id", "modality"])
    write_tsv(out_tsv, table)
    failed = table[~table["qc_pass"]]
    for row in failed.itertuples():
        print(f"QC flag: {row.participant_id} {row.session_id} {row.modality} {row.variant}: {row.qc_reasons}")
    return table
