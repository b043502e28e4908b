"""QC table: outlier flags per variant and modality."""

import numpy as np
import pandas as pd

from braindl import qc

SETTINGS = {"outlier_z": 3.5, "min_group_size": 10, "similarity_scale_floor": 0.02, "volume_scale_floor": 0.03, "min_similarity": 0.5, "determinant_range": [0.5, 2.0]}


def _table(n=12):
    rows = []
    for i in range(n):
        for variant in ("none", "linear"):
            rows.append(dict(participant_id=f"sub-{i:02d}", session_id="ses-01", modality="T1w", variant=variant,
                             similarity=(0.15 if variant == "none" else 0.9) + 0.01 * (i % 3),
                             mask_volume_ml=1500.0, brain_volume_ml=1500.0 + 10 * (i % 4),
                             affine_determinant=1.0 + 0.02 * (i % 3), registration_seconds=1.0))
    return pd.DataFrame(rows)


def test_clean_table_passes():
    out = qc.flag_outliers(_table(), SETTINGS)
    assert out["qc_pass"].all()


def test_failed_registration_and_outliers_are_flagged():
    t = _table()
    lin = t.variant == "linear"
    t.loc[lin & (t.participant_id == "sub-01"), "similarity"] = 0.05  # noise or blank
    t.loc[lin & (t.participant_id == "sub-02"), "brain_volume_ml"] = 3000.0
    t.loc[lin & (t.participant_id == "sub-03"), "affine_determinant"] = 0.3
    t.loc[(t.variant == "none") & (t.participant_id == "sub-04"), "similarity"] = 0.05
    out = qc.flag_outliers(t, SETTINGS).set_index(["participant_id", "variant"])
    assert "registration failed" in out.loc[("sub-01", "linear"), "qc_reasons"]
    assert "brain volume outlier" in out.loc[("sub-02", "linear"), "qc_reasons"]
    assert "affine scaling 0.30" in out.loc[("sub-03", "linear"), "qc_reasons"]
    # the unaligned variant has no similarity floor, but a low outlier is still flagged
    assert "similarity outlier" in out.loc[("sub-04", "none"), "qc_reasons"]
    assert "registration failed" not in out.loc[("sub-04", "none"), "qc_reasons"]
    assert int((~out["qc_pass"]).sum()) == 4


def test_robust_z_constant_column_is_zero():
    assert (qc.robust_z(pd.Series([2.0, 2.0, 2.0])) == 0).all()


def test_small_groups_get_only_the_absolute_checks():
    t = _table(4)
    lin = t.variant == "linear"
    t.loc[lin & (t.participant_id == "sub-01"), "brain_volume_ml"] = 1600.0  # far out, but among 4 scans
    t.loc[lin & (t.participant_id == "sub-02"), "similarity"] = 0.05
    out = qc.flag_outliers(t, SETTINGS).set_index(["participant_id", "variant"])
    assert out["brain_volume_z"].isna().all()
    assert out.loc[("sub-01", "linear"), "qc_pass"]
    assert "registration failed" in out.loc[("sub-02", "linear"), "qc_reasons"]
    assert int((~out["qc_pass"]).sum()) == 1


def test_tightly_agreeing_registrations_are_not_outliers():
    """SyN correlations within 0.01 of each other: a scan 0.02 below is not a failure."""
    t = _table(12)
    lin = t.variant == "linear"
    t.loc[lin, "similarity"] = 0.96 + 0.001 * np.arange(lin.sum())
    t.loc[lin & (t.participant_id == "sub-01"), "similarity"] = 0.94
    t.loc[lin & (t.participant_id == "sub-02"), "similarity"] = 0.80  # far below: flagged
    out = qc.flag_outliers(t, SETTINGS).set_index(["participant_id", "variant"])
    assert out.loc[("sub-01", "linear"), "qc_pass"]
    assert "similarity outlier" in out.loc[("sub-02", "linear"), "qc_reasons"]
