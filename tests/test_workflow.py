"""The real Snakefile: DAG, a tiny end-to-end run, reruns and refused inputs."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from braindl import synthetic

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = {"synthetic": {"groups": {"CN": 1, "MCI": 0, "AD": 1, "DLB": 0, "FTLD": 0}, "sessions": [1, 2]}}


def smk(repo, workdir, *args, check=True):
    # targets first: --configfile takes several values and would swallow them
    targets = [a for a in args if a == "all"]
    options = [a for a in args if a != "all"]
    cmd = [*SNAKEMAKE, *targets, "-s", str(repo / "Snakefile"), "--directory", str(workdir), *options]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and out.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def job_counts(text):
    """Job stats table of a Snakemake dry run as {rule: count}."""
    block = text.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


def test_dry_run_default_config(repo, tmp_path, default_config):
    out = smk(repo, tmp_path, "-n", "all")
    counts = job_counts(out.stdout + out.stderr)
    cohort = synthetic.cohort_table(default_config["synthetic"])
    per_subject = {k: v for k, v in counts.items() if k.startswith("synthetic_subject_")}
    assert sum(per_subject.values()) == len(cohort)
    for n, count in cohort["n_sessions"].value_counts().items():
        assert per_subject[f"synthetic_subject_{n}ses"] == count
    assert counts["synthetic_disease"] == cohort["diagnosis"].nunique()
    assert counts["check_inputs"] == 1 and counts["all"] == 1


def test_bad_config_is_refused_naming_the_key(repo, tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"training": {"batch_size": "big"}}))
    out = smk(repo, tmp_path, "-n", "all", "--configfile", "bad.yaml", check=False)
    assert out.returncode != 0
    assert "['training']['batch_size']" in out.stdout + out.stderr


@pytest.fixture(scope="module")
def tiny_run(repo, tmp_path_factory):
    wd = tmp_path_factory.mktemp("tiny")
    (wd / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    smk(repo, wd, "--cores", "2", "--configfile", "tiny.yaml", "all")
    return wd


def test_tiny_end_to_end(tiny_run):
    manifest = pd.read_csv(tiny_run / "results/inputs/manifest.tsv", sep="\t", dtype=str)
    settings = yaml.safe_load((REPO / "config.yaml").read_text())["synthetic"]
    table = synthetic.cohort_table({**settings, **TINY["synthetic"]})
    assert len(manifest) == 2 * table["n_sessions"].sum()
    assert set(manifest["modality"]) == {"T1w", "pet"}
    assert set(manifest["diagnosis"]) == {"CN", "AD"}
    assert all(Path(tiny_run / p).is_file() for p in manifest["path"])
    assert (tiny_run / f"results/synthetic/groundtruth/tpl-{synthetic.SPACE}_dx-AD_desc-atrophy_mask.nii.gz").is_file()


def test_second_run_executes_nothing(repo, tiny_run):
    out = smk(repo, tiny_run, "-n", "--configfile", "tiny.yaml", "all")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changed_setting_reruns_generation_only_where_needed(repo, tiny_run):
    over = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    over["synthetic"]["pet_noise"] = 0.05
    (tiny_run / "changed.yaml").write_text(yaml.safe_dump(over))
    out = smk(repo, tiny_run, "-n", "--configfile", "changed.yaml", "all")
    counts = job_counts(out.stdout + out.stderr)
    assert sum(v for k, v in counts.items() if k.startswith("synthetic_subject_")) == 2
    assert counts.get("check_inputs") == 1
    # a setting of a later stage leaves the cohort alone
    over = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    over["dataset"] = {"diagnoses": ["CN", "MCI", "AD", "DLB", "FTLD", "PD"]}
    (tiny_run / "dx.yaml").write_text(yaml.safe_dump(over))
    out = smk(repo, tiny_run, "-n", "--configfile", "dx.yaml", "all")
    counts = job_counts(out.stdout + out.stderr)
    assert set(counts) == {"check_inputs", "all"}


def test_bad_bids_dataset_fails_before_any_work(repo, tiny_run, tmp_path):
    bids = tmp_path / "bids"
    src = tiny_run / "results/synthetic/bids"
    subprocess.run(["cp", "-r", str(src), str(bids)], check=True)
    t1 = sorted(bids.glob("sub-*/ses-01/anat/*_T1w.nii.gz"))[0]
    t1.write_bytes(b"garbage")
    (tmp_path / "real.yaml").write_text(yaml.safe_dump({"dataset": {"bids_dir": str(bids)}}))
    out = smk(repo, tmp_path, "--cores", "1", "--configfile", "real.yaml", "all", check=False)
    assert out.returncode != 0
    log = (tmp_path / "results/inputs/logs/check_inputs.log").read_text()
    assert str(t1) in log and "not a readable NIfTI" in log
    assert not (tmp_path / "results/inputs/manifest.tsv").exists()


def test_full_protocol_dry_run(repo, tmp_path):
    """The README's full-protocol command builds its DAG (targets before --configfile)."""
    full = yaml.safe_load((repo / "configs/full_protocol.yaml").read_text())
    out = smk(repo, tmp_path, "-n", "all", "--cores", "32", "--configfile", str(repo / "configs/full_protocol.yaml"))
    counts = job_counts(out.stdout + out.stderr)
    n_subjects = sum(full["synthetic"]["groups"].values())
    assert sum(v for k, v in counts.items() if k.startswith("synthetic_subject_")) == n_subjects
