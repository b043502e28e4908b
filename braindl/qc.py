"""Preprocessing QC over every registration variant, with exclusions decided per scan.

The rows come from :func:`braindl.skullstrip.qc_row` (one per scan and variant).

Absolute plausibility checks apply to every scan, whatever the dataset's size:

* native brain volume (the extraction stage's mask, one per scan) outside
  ``brain_volume_ml``;
* aligned variants: correlation with the template below ``min_similarity`` (a
  failed or diverged registration: blank image, noise, a wrong orientation);
* aligned variants: affine volume scaling outside ``determinant_range``;
* ``syn``: the 1st or 99th percentile of the warp's Jacobian determinant in the
  template brain outside ``jacobian_range`` (folding or runaway expansion).

Robust z-scores (median and MAD, scale floors ``similarity_scale_floor`` in
correlation units and ``volume_scale_floor`` as a fraction of the median) come on
top, **within variant x modality x diagnosis**, where such a group holds at least
``min_group_size`` scans: atrophy and head size make patients' brain volumes low,
so a z-score over all diagnoses would exclude exactly the disease. Groups
smaller than that get no z-score (NaN).

A scan (participant, session, modality) that any variant flags is left out of
every variant, and ``qc_reasons`` says which variant flagged it and why, so that
the variants are compared on the same scans. Flagged scans keep their files; the
``qc_pass`` column tells later stages (splits, packs) to leave them out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from braindl.io import write_tsv

SCAN_KEYS = ["participant_id", "session_id", "modality"]


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


def _absolute(row, settings: dict) -> list[str]:
    """Reasons from the absolute checks of one scan and variant."""
    why = []
    lo, hi = settings["brain_volume_ml"]
    if not lo <= row.brain_volume_ml <= hi:
        why.append(f"native brain volume {row.brain_volume_ml:.0f} ml outside [{lo}, {hi}]")
    if row.variant == "none":
        return why
    if not row.similarity >= float(settings["min_similarity"]):  # NaN fails too
        why.append(f"similarity {row.similarity:.2f} below {settings['min_similarity']} (registration failed)")
    lo, hi = settings["determinant_range"]
    if not lo <= row.affine_determinant <= hi:
        why.append(f"affine scaling {row.affine_determinant:.2f} outside [{lo}, {hi}]")
    if row.variant == "syn":
        lo, hi = settings["jacobian_range"]
        if not (row.jacobian_p01 >= lo and row.jacobian_p99 <= hi):
            why.append(f"SyN Jacobian 1-99 % range [{row.jacobian_p01:.2f}, {row.jacobian_p99:.2f}] "
                       f"outside [{lo}, {hi}]")
    return why


def flag_outliers(table: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """Add ``similarity_z``, ``brain_volume_z``, ``variant_reasons`` (this row's), and the per-scan
    decision over all variants: ``qc_reasons`` and ``qc_pass``. ``table`` needs a ``diagnosis`` column."""
    out = table.reset_index(drop=True).copy()
    z_thr = float(settings["outlier_z"])
    out["similarity_z"] = np.nan
    out["brain_volume_z"] = np.nan
    for _, idx in out.groupby(["variant", "modality", "diagnosis"], dropna=False).groups.items():
        if len(idx) < int(settings["min_group_size"]):
            continue
        vol = out.loc[idx, "brain_volume_ml"]
        out.loc[idx, "brain_volume_z"] = robust_z(vol, settings["volume_scale_floor"] * vol.median()).round(3)
        sim = out.loc[idx, "similarity"]
        if sim.notna().all():
            out.loc[idx, "similarity_z"] = robust_z(sim, settings["similarity_scale_floor"]).round(3)
    own = []
    for row in out.itertuples():
        why = _absolute(row, settings)
        if row.similarity_z < -z_thr:  # NaN compares False
            why.append(f"similarity outlier within {row.diagnosis} (z {row.similarity_z:.1f})")
        if abs(row.brain_volume_z) > z_thr:
            why.append(f"brain volume outlier within {row.diagnosis} (z {row.brain_volume_z:.1f})")
        own.append("; ".join(why))
    out["variant_reasons"] = own
    per_scan = {}
    for key, grp in out.groupby(SCAN_KEYS, sort=False):
        reasons = []
        for r in grp.sort_values("variant").itertuples():
            reasons += [f"{r.variant}: {w}" for w in r.variant_reasons.split("; ") if w]
        per_scan[key] = "; ".join(reasons)
    out["qc_reasons"] = [per_scan[tuple(k)] for k in out[SCAN_KEYS].itertuples(index=False)]
    out["qc_pass"] = out["qc_reasons"] == ""
    return out


def scan_table(flagged: pd.DataFrame) -> pd.DataFrame:
    """One row per scan: participant, session, modality, diagnosis, qc_pass, qc_reasons."""
    cols = SCAN_KEYS + ["diagnosis", "qc_pass", "qc_reasons"]
    return flagged[cols].drop_duplicates(SCAN_KEYS).sort_values(SCAN_KEYS).reset_index(drop=True)


def prefixed_ids(table: pd.DataFrame) -> pd.DataFrame:
    """``participant_id``/``session_id`` as the QC tables write them (``sub-``/``ses-`` prefixed)."""
    out = table.copy()
    for col, pre in (("participant_id", "sub-"), ("session_id", "ses-")):
        out[col] = out[col].astype(str).map(lambda x, pre=pre: x if x.startswith(pre) else f"{pre}{x}")
    return out


def with_diagnosis(rows: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """QC rows with the manifest's diagnosis of each participant's session."""
    m = prefixed_ids(manifest[["participant_id", "session_id", "diagnosis"]])
    m = m.drop_duplicates(["participant_id", "session_id"])
    out = rows.merge(m, on=["participant_id", "session_id"], how="left")
    out["diagnosis"] = out["diagnosis"].fillna("n/a")
    return out


def run_qc_table(settings: dict, rows: list, manifest_tsv, out_tsvs: dict, out_scans) -> pd.DataFrame:
    """Gather the per-session QC rows of every variant, flag, decide per scan; write one table per
    variant (``out_tsvs``: variant -> path) and the per-scan decisions (``out_scans``)."""
    table = pd.concat([pd.read_csv(p, sep="\t") for p in rows], ignore_index=True)
    manifest = pd.read_csv(manifest_tsv, sep="\t", dtype={"participant_id": str, "session_id": str})
    flagged = flag_outliers(with_diagnosis(table, manifest), settings).sort_values(SCAN_KEYS + ["variant"])
    for variant, path in out_tsvs.items():
        write_tsv(path, flagged[flagged["variant"] == variant].reset_index(drop=True))
    scans = scan_table(flagged)
    write_tsv(out_scans, scans)
    for row in scans[~scans["qc_pass"]].itertuples():
        print(f"QC: {row.participant_id} {row.session_id} {row.modality} left out of every variant: {row.qc_reasons}")
    return flagged


def passing_sessions(scans: pd.DataFrame, modalities) -> set[tuple[str, str]]:
    """(participant_id, session_id) whose scans of every one of ``modalities`` passed QC (ids as in
    the QC table, ``sub-``/``ses-`` prefixed). A session without a scan of a modality does not pass."""
    ok = scans[scans["modality"].isin(list(modalities))]
    good = ok.groupby(["participant_id", "session_id"])["qc_pass"].agg(
        lambda s: bool(s.astype(str).str.lower().isin(["true", "1"]).all()))
    counts = ok.groupby(["participant_id", "session_id"]).size()
    return {k for k, v in good.items() if v and counts[k] == len(set(modalities))}
