"""The Snakefile on a BIDS dataset it did not make: Clinica's ADNI layout, and broken datasets.

The ADNI-layout dataset (tests/adni_layout.py) has T1w runs, two tracers in a session,
T1w-only sessions, a PET without a T1w and a diagnosis per session; its heads come from
tests/posed_heads.py, not from braindl.synthetic.
"""

import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from adni_layout import DESIGN, adni_dataset
from snakemake_runs import job_counts, smk

pytestmark = pytest.mark.slow
# the ADNI layout, FDG only; linear registration and a coarse N4 (accuracy is tested in test_registration.py)
CONFIG = {
    "dataset": {"diagnoses": ["CN", "MCI", "AD"], "out_of_distribution": [], "filters": {"pet": {"trc": "18FFDG"}}},
    "registration": {"variants": ["linear"]},
    "skullstrip": {"n4": {"enabled": True, "shrink_factor": 6, "iterations": [20], "tolerance": 1.0e-3,
                          "spline_distance_mm": 200}},
    "training": {"tasks": ["CN_vs_AD"]},
    "heatmaps": {"tasks": []},
    "transfer": {"tasks": [], "roc_task": None, "embedding_task": None},
    "pretraining": {"model": None},
}


def _config(workdir, bids, **dataset):
    cfg = yaml.safe_load(yaml.safe_dump(CONFIG))
    cfg["dataset"].update(bids_dir=str(bids), **dataset)
    path = Path(workdir) / "adni.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def adni(repo, tmp_path_factory):
    """The ADNI-layout dataset, preprocessed (`snakemake preprocessing`)."""
    work = tmp_path_factory.mktemp("adni")
    expected = adni_dataset(work / "bids")
    cfg = _config(work, work / "bids")
    dry = smk(repo, work, "preprocessing", "-n", "--configfile", str(cfg))
    smk(repo, work, "preprocessing", "--cores", "2", "--configfile", str(cfg))
    return {"work": work, "bids": work / "bids", "config": cfg, "expected": expected, "dry": dry.stdout}


def test_adni_layout_jobs_per_modality_set(adni):
    # 4 sessions with a T1w; 2 of them with FDG: per-session rules run once per session, in the variant
    # made for its set of modalities
    counts = job_counts(adni["dry"])
    for stage in ("extract", "register_linear", "strip_crop"):
        assert counts[stage] == 2 and counts[f"{stage}_T1w"] == 2, counts
    assert not any(k.endswith("_pet") for k in counts)


def test_adni_manifest_holds_exactly_the_selected_files(adni):
    man = pd.read_csv(adni["work"] / "results/inputs/manifest.tsv", sep="\t", dtype=str)
    got = {(p, s, m): path for p, s, m, path in man[["participant_id", "session_id", "modality", "path"]].values}
    assert got == adni["expected"]
    # diagnosis and age per session from sessions.tsv (participant 2 converts from MCI to AD)
    dx = {(p, s): d for p, s, d in man[["participant_id", "session_id", "diagnosis"]].values}
    assert dx == {(p, s): DESIGN[p][s][0] for p, s, _ in adni["expected"]}
    assert float(man.loc[(man.participant_id == "sub-ADNI022S0004") & (man.session_id == "M012"), "age"].iloc[0]) == 69.1
    skipped = pd.read_csv(adni["work"] / "results/inputs/skipped.tsv", sep="\t")
    reasons = {Path(p).name: r for p, r in skipped.values}
    assert set(reasons) == {"sub-ADNI011S0002_ses-M000_run-01_T1w.nii.gz",
                            "sub-ADNI011S0002_ses-M000_trc-18FAV45_rec-coregiso_pet.nii.gz",
                            "sub-ADNI022S0004_ses-M024_trc-18FFDG_rec-coregiso_pet.nii.gz"}
    assert "dataset.runs: last" in reasons["sub-ADNI011S0002_ses-M000_run-01_T1w.nii.gz"]
    assert "trc-18FAV45 is not 18FFDG" in reasons["sub-ADNI011S0002_ses-M000_trc-18FAV45_rec-coregiso_pet.nii.gz"]
    assert "no T1w in this session" in reasons["sub-ADNI022S0004_ses-M024_trc-18FFDG_rec-coregiso_pet.nii.gz"]


def test_t1w_only_sessions_are_preprocessed_for_t1w_only(adni):
    res = adni["work"] / "results"
    for p, sessions in DESIGN.items():
        for s, (_, _, runs, pets) in sessions.items():
            has_pet = (p, s, "pet") in adni["expected"]
            for stage in ("extraction", "registration", "crop"):
                d = res / stage / p / f"ses-{s}"
                assert (d / "anat").is_dir() == bool(runs), (stage, p, s)
                assert (d / "pet").is_dir() == has_pet, (stage, p, s)
    crops = sorted(res.glob("crop/sub-*/ses-*/*/*_desc-linear_*.nii.gz"))
    assert len(crops) == 6
    qc = pd.read_csv(res / "qc/scans_qc.tsv", sep="\t", dtype=str)
    assert sorted(zip(qc.participant_id, qc.session_id, qc.modality)) == sorted(
        (p, f"ses-{s}", m) for p, s, m in adni["expected"])
    # each cropped scan holds the whole brain its registration carried onto the template grid
    rows = pd.read_csv(res / "qc/desc-linear_qc.tsv", sep="\t", dtype={"session_id": str})
    for crop in crops:
        p, s = crop.name.split("_")[:2]
        mod = "T1w" if "/anat/" in str(crop) else "pet"
        img = nib.load(str(crop))
        ml = (img.get_fdata() != 0).sum() * abs(np.linalg.det(img.affine[:3, :3])) / 1000
        grid = rows.loc[(rows.participant_id == p) & (rows.session_id == s) & (rows.modality == mod),
                        "grid_volume_ml"].iloc[0]
        # (PET: uptake is 0 in some CSF voxels of the mask)
        assert 1500 < ml < 2400 and abs(ml - grid) < (0.03 if mod == "T1w" else 0.1) * grid, (crop.name, ml, grid)


def test_the_index_is_kept_between_parses(repo, adni):
    cache = sorted((adni["work"] / ".snakemake/braindl/bids_index").glob("*.tsv"))
    assert len(cache) == 1
    index = pd.read_csv(cache[0], sep="\t", dtype=str)
    assert "sub-ADNI011S0002/ses-M000/pet/sub-ADNI011S0002_ses-M000_trc-18FAV45_rec-coregiso_pet.nii.gz" in set(
        index.relpath)
    out = smk(repo, adni["work"], "preprocessing", "-n", "--configfile", str(adni["config"]))
    assert job_counts(out.stdout) == {}


def test_a_new_session_reruns_what_gathers_sessions(repo, adni, tmp_path):
    """PARTICIPANTS_DIGEST covered participants.tsv only: a new session of a known participant left the
    splits stale. The pack (and the splits) now depend on the scans they use."""
    work, cfg = adni["work"], adni["config"]
    pack = "results/pack/desc-linear_T1w_volumes.npy"
    smk(repo, work, pack, "--cores", "2", "--configfile", str(cfg))
    assert job_counts(smk(repo, work, pack, "-n", "--configfile", str(cfg)).stdout) == {}
    bids = adni["bids"]
    new = bids / "sub-ADNI011S0002/ses-M024/anat/sub-ADNI011S0002_ses-M024_run-01_T1w.nii.gz"
    new.parent.mkdir(parents=True)
    shutil.copy(bids / "sub-ADNI011S0002/ses-M012/anat/sub-ADNI011S0002_ses-M012_run-01_T1w.nii.gz", new)
    sessions = bids / "sub-ADNI011S0002/sub-ADNI011S0002_sessions.tsv"
    text = sessions.read_text()
    try:
        sessions.write_text(text + "ses-M024\t76.3\tCN\t27\n")
        out = smk(repo, work, pack, "-n", "--configfile", str(cfg))
        counts = job_counts(out.stdout)
        # the new session's chain, the pack and the check; no other session reruns
        assert counts["session_scans"] == 1 and counts["extract_T1w"] == 1 and counts["strip_crop_T1w"] == 1, counts
        assert counts["pack"] == 1 and counts["check_inputs"] == 1 and "extract" not in counts, counts
    finally:
        shutil.rmtree(new.parent.parent)
        sessions.write_text(text)


# ---- broken datasets: refused by check_inputs, naming every file, before any other job --------------


def test_broken_dataset_refused_at_once_before_any_work(repo, adni, tmp_path):
    bids = tmp_path / "bids"
    shutil.copytree(adni["bids"], bids, symlinks=True)
    t1 = bids / "sub-ADNI011S0002/ses-M012/anat/sub-ADNI011S0002_ses-M012_run-01_T1w.nii.gz"
    t1.unlink()
    os.symlink("../../../.git/annex/objects/Qx/Zz/MD5E-s9--x.nii.gz/MD5E-s9--x.nii.gz", t1)  # unfetched DataLad file
    fdg = bids / "sub-ADNI022S0004/ses-M000/pet/sub-ADNI022S0004_ses-M000_trc-18FFDG_rec-coregiso_pet.nii.gz"
    lower = fdg.with_name(fdg.name.replace("_pet", "_PET"))
    fdg.rename(lower)
    ptsv = bids / "participants.tsv"
    ptsv.write_bytes(ptsv.read_bytes().replace(b"\tM\n", b"\tM\xe9\n"))
    cfg = _config(tmp_path, bids)
    out = smk(repo, tmp_path, "all", "--cores", "2", "--configfile", str(cfg), check=False)
    assert out.returncode != 0
    # parsed and built the DAG without a traceback; the check_inputs job raised the problems
    assert "Building DAG of jobs" in out.stderr and "Traceback" not in out.stderr.split("Building DAG of jobs")[0]
    assert "InputError" in out.stderr
    log = (tmp_path / "results/inputs/logs/check_inputs.log").read_text()
    for path, words in ((t1, "broken symbolic link"), (t1, "datalad get"), (ptsv, "not UTF-8"),
                        (lower, "suffix 'PET' is not the BIDS suffix 'pet'")):
        assert any(str(path) in line and words in line for line in log.splitlines()), (path, words, log)
    # nothing but the check ran, and it left no manifest
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["inputs"]
    assert not (tmp_path / "results/inputs/manifest.tsv").exists()


@pytest.mark.parametrize("case", ["absent", "not_utf8"])
def test_parse_never_crashes_on_a_dataset(repo, tmp_path, adni, case):
    if case == "absent":
        bids = tmp_path / "no-such-dataset"
        words = "bids_dir does not exist"
    else:
        bids = tmp_path / "bids"
        shutil.copytree(adni["bids"], bids)
        (bids / "participants.tsv").write_bytes(b"participant_id\tsex\nsub-ADNI011S0002\t\xff\n")
        words = "not UTF-8"
    cfg = _config(tmp_path, bids)
    dry = smk(repo, tmp_path, "all", "-n", "--configfile", str(cfg))
    assert "Traceback" not in dry.stderr and "check_inputs" in job_counts(dry.stdout)
    out = smk(repo, tmp_path, "all", "--cores", "1", "--configfile", str(cfg), check=False)
    assert out.returncode != 0
    log = (tmp_path / "results/inputs/logs/check_inputs.log").read_text()
    assert words in log and str(bids) in log
    assert not (tmp_path / "results/inputs/manifest.tsv").exists()


def test_readme_adni_config_runs_on_the_adni_layout(repo, adni, tmp_path):
    """The README's config for a Clinica ADNI dataset is valid and selects what it says."""
    text = (repo / "README.md").read_text()
    block = re.search(r"```yaml\n(# adni.yaml.*?)```", text, re.S).group(1)
    cfg = yaml.safe_load(block)
    cfg["dataset"]["bids_dir"] = str(adni["bids"])
    for key in ("registration", "training", "heatmaps", "transfer", "pretraining"):
        cfg[key] = CONFIG[key]
    (tmp_path / "adni.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(repo, tmp_path, "preprocessing", "-n", "--configfile", str(tmp_path / "adni.yaml"))
    counts = job_counts(out.stdout)
    # ADNI011S0002 is excluded: ADNI022S0004's M000 (T1w + FDG) and M012 (T1w) remain
    assert counts["extract"] == 1 and counts["extract_T1w"] == 1 and counts["session_scans"] == 2, counts
    assert "ADNI011S0002" not in out.stdout


def test_an_adni_layout_dataset_is_an_external_dataset_beside_the_synthetic_cohort(repo, adni, tmp_path):
    """External validation on a dataset the generator did not make: the ADNI layout (T1w runs, two tracers,
    T1w-only sessions, diagnoses per session) with its own filters and diagnoses, preprocessed by the
    workflow's rules in its own module and predicted by every selected run (a dry run)."""
    ext = {"external": {"datasets": {"site2": None, "adni": {
        "bids_dir": str(adni["bids"]), "diagnoses": ["CN", "MCI", "AD"], "filters": {"pet": {"trc": "18FFDG"}}}},
        "tasks": ["CN_vs_AD"], "modalities": ["T1w"], "variants": ["linear"], "heatmap_methods": []}}
    (tmp_path / "ext.yaml").write_text(yaml.safe_dump(ext))
    out = smk(repo, tmp_path, "all", "-n", "--configfile", "ext.yaml")
    counts = job_counts(out.stdout + out.stderr)
    t1w_sessions = {(p, s) for p, s, m in adni["expected"] if m == "T1w"}
    assert sum(k for r, k in counts.items() if r.startswith("external_adni_extract")) == len(t1w_sessions) == 4
    assert sum(k for r, k in counts.items() if r.startswith("external_adni_register_linear")) == 4
    assert not any(r.startswith("external_adni_register_syn") or r.startswith("external_site2") for r in counts)
    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    n_runs = cfg["splits"]["n_splits"] * cfg["splits"]["n_repeats"]
    assert counts["external_predict"] == n_runs and counts["external_metrics"] == 1
