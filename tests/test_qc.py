"""QC table: absolute checks on every scan, z-scores within diagnosis, exclusions per scan across variants."""

import numpy as np
import pandas as pd
import pytest

from braindl import qc

SETTINGS = {"outlier_z": 3.5, "min_group_size": 10, "similarity_scale_floor": 0.02, "volume_scale_floor": 0.03,
            "min_similarity": 0.5, "determinant_range": [0.5, 2.0], "brain_volume_ml": [900, 2600],
            "jacobian_range": [0.2, 5.0]}
VARIANTS = ("none", "linear", "syn")


def _table(n=12, dx=("CN",), volume=1500.0):
    rows = []
    for i in range(n):
        for variant in VARIANTS:
            rows.append(dict(participant_id=f"sub-{i:02d}", session_id="ses-01", modality="T1w", variant=variant,
                             diagnosis=dx[i % len(dx)],
                             similarity=np.nan if variant == "none" else 0.9 + 0.01 * (i % 3),
                             brain_volume_ml=volume + 10 * (i % 4), grid_volume_ml=1800.0,
                             affine_determinant=1.0 + 0.02 * (i % 3),
                             jacobian_p01=0.8 if variant == "syn" else np.nan,
                             jacobian_p99=1.2 if variant == "syn" else np.nan, registration_seconds=1.0))
    return pd.DataFrame(rows)


def _by(out):
    return out.set_index(["participant_id", "variant"])


def test_clean_table_passes():
    out = qc.flag_outliers(_table(), SETTINGS)
    assert out["qc_pass"].all() and (out["qc_reasons"] == "").all()


def test_absolute_checks_flag_a_scan_in_every_variant():
    t = _table()
    lin, syn = t.variant == "linear", t.variant == "syn"
    t.loc[lin & (t.participant_id == "sub-01"), "similarity"] = 0.05  # noise or blank
    t.loc[t.participant_id == "sub-02", "brain_volume_ml"] = 3100.0  # an absurd native mask
    t.loc[lin & (t.participant_id == "sub-03"), "affine_determinant"] = 0.3
    t.loc[syn & (t.participant_id == "sub-04"), "jacobian_p01"] = 0.05  # folding
    out = _by(qc.flag_outliers(t, SETTINGS))
    assert "linear: similarity 0.05 below 0.5 (registration failed)" in out.loc[("sub-01", "syn"), "qc_reasons"]
    assert "native brain volume 3100 ml outside [900, 2600]" in out.loc[("sub-02", "none"), "qc_reasons"]
    assert "linear: affine scaling 0.30 outside [0.5, 2.0]" in out.loc[("sub-03", "none"), "qc_reasons"]
    assert "syn: SyN Jacobian 1-99 % range [0.05, 1.20]" in out.loc[("sub-04", "linear"), "qc_reasons"]
    # the decision is per scan: a flagged scan fails in every variant, the others pass everywhere
    failed = out[~out["qc_pass"]].reset_index()
    assert sorted(failed["participant_id"].unique()) == ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert len(failed) == 4 * len(VARIANTS)
    # variant_reasons keeps what each variant itself found
    assert out.loc[("sub-01", "none"), "variant_reasons"] == ""
    assert "registration failed" in out.loc[("sub-01", "linear"), "variant_reasons"]


def test_unaligned_variant_has_no_similarity_floor():
    t = _table()
    assert t.loc[t.variant == "none", "similarity"].isna().all()
    assert qc.flag_outliers(t, SETTINGS)["qc_pass"].all()


def test_robust_z_constant_column_is_zero():
    assert (qc.robust_z(pd.Series([2.0, 2.0, 2.0])) == 0).all()


def test_small_groups_get_only_the_absolute_checks():
    t = _table(4)
    t.loc[t.participant_id == "sub-01", "brain_volume_ml"] = 1700.0  # far out, but among 4 scans
    t.loc[(t.variant == "syn") & (t.participant_id == "sub-02"), "similarity"] = 0.05
    out = _by(qc.flag_outliers(t, SETTINGS))
    assert out["brain_volume_z"].isna().all()
    assert out.loc[("sub-01", "linear"), "qc_pass"]
    assert "syn: similarity 0.05" in out.loc[("sub-02", "none"), "qc_reasons"]
    assert int((~out.xs("linear", level="variant")["qc_pass"]).sum()) == 1


def test_tightly_agreeing_registrations_are_not_outliers():
    """SyN correlations within 0.01 of each other: a scan 0.02 below is not a failure."""
    t = _table(12)
    syn = t.variant == "syn"
    t.loc[syn, "similarity"] = 0.96 + 0.001 * np.arange(syn.sum())
    t.loc[syn & (t.participant_id == "sub-01"), "similarity"] = 0.94
    t.loc[syn & (t.participant_id == "sub-02"), "similarity"] = 0.80  # far below: flagged
    out = _by(qc.flag_outliers(t, SETTINGS))
    assert out.loc[("sub-01", "syn"), "qc_pass"]
    assert "similarity outlier within CN" in out.loc[("sub-02", "syn"), "qc_reasons"]


def test_atrophy_is_not_an_outlier():
    """12 controls and 12 patients whose brains are 20 % smaller (atrophy, head size): a z-score over
    all diagnoses flags patients (the bug of issue 18); within diagnosis none is flagged, and an outlier
    among the patients still is."""
    cn = _table(12, ("CN",), 1500.0)
    ad = _table(12, ("AD",), 1200.0)
    ad["participant_id"] = ad["participant_id"].str.replace("sub-", "sub-ad")
    t = pd.concat([cn, ad], ignore_index=True)
    few = pd.concat([cn, ad[ad.participant_id.isin(["sub-ad00", "sub-ad01", "sub-ad02"])]])
    pooled = qc.flag_outliers(few.assign(diagnosis="all"), SETTINGS)
    assert set(pooled.loc[~pooled.qc_pass, "participant_id"]) == {"sub-ad00", "sub-ad01", "sub-ad02"}
    out = qc.flag_outliers(t, SETTINGS)
    assert out["qc_pass"].all()
    t.loc[t.participant_id == "sub-ad03", "brain_volume_ml"] = 950.0  # plausible, but far below the AD group
    out = _by(qc.flag_outliers(t, SETTINGS))
    assert "brain volume outlier within AD" in out.loc[("sub-ad03", "syn"), "qc_reasons"]
    assert int((~out["qc_pass"]).sum()) == len(VARIANTS)


def test_passing_sessions_need_every_used_modality():
    scans = pd.DataFrame([
        dict(participant_id="sub-1", session_id="ses-01", modality="T1w", qc_pass=True),
        dict(participant_id="sub-1", session_id="ses-01", modality="pet", qc_pass=False),
        dict(participant_id="sub-2", session_id="ses-01", modality="T1w", qc_pass=True),
        dict(participant_id="sub-3", session_id="ses-01", modality="T1w", qc_pass=False),
    ])
    assert qc.passing_sessions(scans, ["T1w"]) == {("sub-1", "ses-01"), ("sub-2", "ses-01")}
    # sub-2 has no PET: it cannot pass a T1w + PET task
    assert qc.passing_sessions(scans, ["T1w", "pet"]) == set()


def test_run_qc_table_writes_per_variant_and_per_scan(tmp_path):
    t = _table(4)
    t.loc[t.participant_id == "sub-01", "brain_volume_ml"] = 500.0
    rows = []
    for v in VARIANTS:
        p = tmp_path / f"rows_{v}.tsv"
        t[t.variant == v].drop(columns="diagnosis").to_csv(p, sep="\t", index=False)
        rows.append(p)
    manifest = pd.DataFrame(dict(participant_id=[f"sub-{i:02d}" for i in range(4)], session_id="ses-01",
                                 modality="T1w", diagnosis=["CN", "AD", "CN", "AD"]))
    manifest.to_csv(tmp_path / "manifest.tsv", sep="\t", index=False)
    outs = {v: tmp_path / f"desc-{v}_qc.tsv" for v in VARIANTS}
    qc.run_qc_table(SETTINGS, rows, tmp_path / "manifest.tsv", outs, tmp_path / "scans.tsv")
    scans = pd.read_csv(tmp_path / "scans.tsv", sep="\t")
    assert list(scans.qc_pass) == [True, False, True, True]
    assert list(scans.diagnosis) == ["CN", "AD", "CN", "AD"]
    for v in VARIANTS:
        table = pd.read_csv(outs[v], sep="\t")
        assert set(table.variant) == {v} and list(table.qc_pass) == [True, False, True, True]


@pytest.mark.parametrize("missing", ["brain_volume_ml", "jacobian_range"])
def test_schema_requires_the_absolute_bounds(default_config, missing):
    from snakemake.utils import validate

    cfg = {**default_config, "qc": {k: v for k, v in default_config["qc"].items() if k != missing}}
    with pytest.raises(Exception, match=missing):
        validate(cfg, "braindl/schemas/config.schema.yaml")
