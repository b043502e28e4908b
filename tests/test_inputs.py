"""Input contract: every fault is reported at once, naming its file."""

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from braindl.inputs import (InputError, check_inputs, discover, index_dataset, run_check, scans_digest,
                            session_modalities)

DX = ["CN", "AD"]
SHAPE = (20, 22, 24)  # 3 mm: the smallest field of view accepted is 16 voxels and 60 mm a side


def _img(path, data=None, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]) if affine is None else affine), str(path))
    return path


def _dataset(root, n=3, sessions=("01",)):
    rows = []
    for i in range(1, n + 1):
        sub = f"sub-{i:02d}"
        rows.append(dict(participant_id=sub, diagnosis=DX[i % 2], age=70 + i, sex="F", mmse=28))
        for ses in sessions:
            d = root / sub / f"ses-{ses}"
            _img(d / "anat" / f"{sub}_ses-{ses}_T1w.nii.gz")
            _img(d / "pet" / f"{sub}_ses-{ses}_trc-FDG_pet.nii.gz")
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def test_clean_dataset_gives_manifest(tmp_path):
    root = _dataset(tmp_path, n=3, sessions=("01", "02"))
    man, skipped = check_inputs(root, DX)
    assert len(man) == 3 * 2 * 2 and skipped.empty
    assert set(man.columns) >= {"participant_id", "session_id", "modality", "path", "diagnosis", "shape",
                                "voxel_size_mm", "orientation"}
    assert set(man["shape"]) == {"20x22x24"}
    assert set(man["orientation"]) == {"RAS"}


def test_dataset_without_sessions_is_one_session(tmp_path):
    _img(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii")
    pd.DataFrame([dict(participant_id="sub-01", diagnosis="CN", age=70, sex="M")]).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    files = discover(tmp_path, ["T1w"]).scans
    assert list(files["session_id"]) == ["01"]
    assert len(check_inputs(tmp_path, DX, ["T1w"])[0]) == 1


def test_all_faults_reported_together(tmp_path):
    root = _dataset(tmp_path, n=9)
    t1 = lambda i: root / f"sub-{i:02d}" / "ses-01" / "anat" / f"sub-{i:02d}_ses-01_T1w.nii.gz"  # noqa: E731
    pet = lambda i: root / f"sub-{i:02d}" / "ses-01" / "pet" / f"sub-{i:02d}_ses-01_trc-FDG_pet.nii.gz"  # noqa: E731
    # unreadable: not a NIfTI at all
    t1(1).write_bytes(b"this is not an image")
    # truncated: a valid gzip stream cut in the middle of the data
    raw = gzip.decompress(pet(1).read_bytes())
    with gzip.open(pet(1), "wb") as fh:
        fh.write(raw[: len(raw) // 2])
    # not 3D
    _img(t1(2), np.ones((20, 20, 20, 4), np.float32))
    # NaN and Inf
    bad = np.random.default_rng(1).random(SHAPE).astype(np.float32)
    bad[0, 0, 0] = np.nan
    _img(t1(3), bad)
    bad = np.random.default_rng(2).random(SHAPE).astype(np.float32)
    bad[1, 1, 1] = np.inf
    _img(pet(3), bad)
    # empty image
    _img(t1(4), np.zeros(SHAPE, np.float32))
    # missing: a broken link
    pet(4).unlink()
    os.symlink(root / "nowhere.nii.gz", pet(4))
    # unknown diagnosis and duplicate participant
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    table.loc[table.participant_id == "sub-05", "diagnosis"] = "XYZ"
    table = pd.concat([table, table[table.participant_id == "sub-06"]])
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    # session of a participant not in participants.tsv
    _img(root / "sub-99" / "ses-01" / "anat" / "sub-99_ses-01_T1w.nii.gz")
    # listed participant without images: not a problem, listed as skipped
    for f in (t1(7), pet(7)):
        f.unlink()
    # empty file
    pet(8).write_bytes(b"")

    with pytest.raises(InputError) as err:
        check_inputs(root, DX)
    msg = str(err.value)
    expect = [
        (t1(1), "named .nii.gz but not gzip-compressed"),
        (pet(1), "corrupt or truncated"),
        (t1(2), "not 3D"),
        (t1(3), "NaN"),
        (pet(3), "infinite"),
        (t1(4), "empty image"),
        (pet(4), "broken symbolic link"),
        (root / "participants.tsv", "diagnosis 'XYZ' of sub-05"),
        (root / "participants.tsv", "duplicate participant sub-06"),
        (root / "sub-99", "not in participants.tsv"),
        (pet(8), "empty file"),
    ]
    lines = err.value.problems
    for path, text in expect:
        assert any(str(path) in line and text in line for line in lines), (path, text, msg)
    assert len(lines) == len(expect), msg


def test_missing_participants_tsv_and_directory(tmp_path):
    _img(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    with pytest.raises(InputError, match="participants.tsv: missing"):
        check_inputs(tmp_path, DX, ["T1w"])
    with pytest.raises(InputError) as err:
        check_inputs(tmp_path / "nope", DX)
    assert err.value.problems == [f"{tmp_path / 'nope'}: bids_dir does not exist (dataset.bids_dir in the config)"]


def test_missing_columns_named(tmp_path):
    root = _dataset(tmp_path, n=1)
    pd.DataFrame([dict(participant_id="sub-01", age=3)]).to_csv(root / "participants.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="participants.tsv: missing column.*sex"):
        check_inputs(root, DX)


# ---- several images of a modality: filters, runs ---------------------------------------------------


def test_runs_keep_the_highest_or_refuse_naming_the_files(tmp_path):
    root = _dataset(tmp_path, n=1)
    anat = root / "sub-01" / "ses-01" / "anat"
    (anat / "sub-01_ses-01_T1w.nii.gz").rename(anat / "sub-01_ses-01_run-01_T1w.nii.gz")
    _img(anat / "sub-01_ses-01_run-02_T1w.nii.gz")
    _img(anat / "sub-01_ses-01_run-10_T1w.nii.gz")
    man, skipped = check_inputs(root, DX)
    assert man.loc[man.modality == "T1w", "path"].tolist() == [str(anat / "sub-01_ses-01_run-10_T1w.nii.gz")]
    assert man.loc[man.modality == "T1w", "entities"].tolist() == ["run-10"]
    assert sorted(Path(p).name for p in skipped.path) == ["sub-01_ses-01_run-01_T1w.nii.gz",
                                                          "sub-01_ses-01_run-02_T1w.nii.gz"]
    assert all("dataset.runs: last" in r for r in skipped.reason)
    with pytest.raises(InputError) as err:
        check_inputs(root, DX, runs="refuse")
    (line,) = err.value.problems
    assert "3 T1w images" in line and "run-01_T1w" in line and "run-10_T1w" in line and "differ in run" in line


def test_two_tracers_need_a_filter_and_the_filter_selects(tmp_path):
    root = _dataset(tmp_path, n=2)
    for i in (1, 2):
        pet = root / f"sub-0{i}" / "ses-01" / "pet"
        (pet / f"sub-0{i}_ses-01_trc-FDG_pet.nii.gz").rename(pet / f"sub-0{i}_ses-01_trc-18FFDG_rec-coregiso_pet.nii.gz")
        _img(pet / f"sub-0{i}_ses-01_trc-18FAV45_rec-coregiso_pet.nii.gz")
    with pytest.raises(InputError) as err:
        check_inputs(root, DX)
    assert len(err.value.problems) == 2
    assert all("differ in trc (18FAV45, 18FFDG)" in p and "dataset.filters.pet" in p for p in err.value.problems)
    man, skipped = check_inputs(root, DX, filters={"pet": {"trc": "18FFDG"}})
    pets = man[man.modality == "pet"]
    assert [Path(p).name for p in pets.path] == ["sub-01_ses-01_trc-18FFDG_rec-coregiso_pet.nii.gz",
                                                 "sub-02_ses-01_trc-18FFDG_rec-coregiso_pet.nii.gz"]
    assert set(pets.entities) == {"trc-18FFDG_rec-coregiso"}
    assert len(skipped) == 2 and all("trc-18FAV45 is not 18FFDG" in r for r in skipped.reason)
    # a list of values keeps either; an entity the files lack keeps none
    with pytest.raises(InputError, match="differ in trc"):
        check_inputs(root, DX, filters={"pet": {"trc": ["18FFDG", "18FAV45"]}})
    man, skipped = check_inputs(root, DX, ["T1w", "pet"], filters={"pet": {"acq": "x"}})
    assert set(man.modality) == {"T1w"} and len(skipped) == 4


def test_participant_lists(tmp_path):
    root = _dataset(tmp_path, n=3)
    man, skipped = check_inputs(root, DX, participants={"include": ["01", "sub-02"], "exclude": ["02"]})
    assert set(man.participant_id) == {"sub-01"}
    reasons = dict(zip([Path(p).name for p in skipped.path], skipped.reason))
    assert "dataset.participants.exclude" in reasons["sub-02_ses-01_T1w.nii.gz"]
    assert "dataset.participants.include" in reasons["sub-03_ses-01_T1w.nii.gz"]


# ---- sessions with a subset of the modalities; diagnosis per session ---------------------------------


def test_sessions_keep_the_modalities_they_have(tmp_path):
    root = _dataset(tmp_path, n=2, sessions=("01", "02"))
    os.unlink(root / "sub-02" / "ses-01" / "pet" / "sub-02_ses-01_trc-FDG_pet.nii.gz")  # T1w only
    os.unlink(root / "sub-01" / "ses-02" / "anat" / "sub-01_ses-02_T1w.nii.gz")  # PET only
    man, skipped = check_inputs(root, DX)
    have = man.groupby(["participant_id", "session_id"])["modality"].agg(tuple).to_dict()
    # via_t1 (the default): a PET without its session's T1w is left out, and said
    assert have == {("sub-01", "01"): ("T1w", "pet"), ("sub-02", "01"): ("T1w",), ("sub-02", "02"): ("T1w", "pet")}
    (reason,) = skipped.loc[skipped.path.str.contains("sub-01_ses-02"), "reason"]
    assert "no T1w in this session" in reason
    assert session_modalities(man, ["T1w", "pet"]) == {("01", "01"): ("T1w", "pet"), ("02", "01"): ("T1w",),
                                                       ("02", "02"): ("T1w", "pet")}
    # pet_template registers PET alone: it is kept
    man, _ = check_inputs(root, DX, pet_route="pet_template")
    assert ("sub-01", "02", "pet") in set(zip(man.participant_id, man.session_id, man.modality))
    # a T1w-only study does not look at PET
    man, _ = check_inputs(root, DX, ["T1w"])
    assert set(man.modality) == {"T1w"} and len(man) == 3


def test_diagnosis_per_session_from_sessions_tsv(tmp_path):
    root = _dataset(tmp_path, n=2, sessions=("M000", "M012"))
    table = pd.read_csv(root / "participants.tsv", sep="\t").drop(columns=["diagnosis", "age"])
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / "sub-01" / "sub-01_sessions.tsv").write_text("session_id\tdiagnosis\tage\nses-M000\tCN\t70.5\n"
                                                         "ses-M012\tAD\t71.5\n")
    (root / "sub-02" / "sub-02_sessions.tsv").write_text("session_id\tdiagnosis\tage\nses-M000\tCN\t60\n"
                                                         "ses-M012\tn/a\t61\n")
    with pytest.raises(InputError) as err:
        check_inputs(root, DX)
    (line,) = err.value.problems
    assert str(root / "sub-02" / "sub-02_sessions.tsv") in line and "diagnosis of sub-02 ses-M012 is n/a" in line
    assert "nan" not in line
    # a session without its row in sessions.tsv: said so
    (root / "sub-02" / "sub-02_sessions.tsv").write_text("session_id\tdiagnosis\tage\nses-M000\tCN\t60\n")
    with pytest.raises(InputError) as err:
        check_inputs(root, DX)
    assert any("diagnosis of sub-02 ses-M012 is not given: sub-02_sessions.tsv has no row ses-M012" in p
               for p in err.value.problems), err.value.problems
    (root / "sub-02" / "sub-02_sessions.tsv").write_text("session_id\tdiagnosis\tage\nses-M000\tCN\t60\n"
                                                         "ses-M012\tCN\t61\n")
    man, _ = check_inputs(root, DX)
    t1 = man[man.modality == "T1w"].set_index(["participant_id", "session_id"])
    assert t1["diagnosis"].to_dict() == {("sub-01", "M000"): "CN", ("sub-01", "M012"): "AD",
                                         ("sub-02", "M000"): "CN", ("sub-02", "M012"): "CN"}
    assert t1["age"].astype(float).to_dict()[("sub-01", "M012")] == 71.5


# ---- each bad input: refused naming the file and the problem, nothing written ---------------------


def _refused(root, words, path, **kwargs):
    """run_check refuses the dataset with a problem naming ``path`` in ``words``, writing nothing."""
    out = root.parent / "out"
    with pytest.raises(InputError) as err:
        run_check(root, {"diagnoses": DX, "modalities": kwargs.pop("modalities", ["T1w", "pet"]), **kwargs}, "via_t1",
                  out / "manifest.tsv", out / "skipped.tsv")
    hits = [p for p in err.value.problems if str(path) in p and all(w in p for w in words)]
    assert hits, (path, words, err.value.problems)
    assert not out.exists() or not any(out.iterdir())
    return hits[0]


def test_no_orientation_refused(tmp_path):
    root = _dataset(tmp_path / "ds", n=1)
    t1 = root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w.nii.gz"
    img = nib.load(str(t1))
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), None, img.header), str(t1))
    assert int(nib.load(str(t1)).header["qform_code"]) == 0 == int(nib.load(str(t1)).header["sform_code"])
    _refused(root, ["no orientation", "qform_code and sform_code are both 0"], t1)


def test_bids_dir_participants_tsv_and_encoding_named(tmp_path):
    root = _dataset(tmp_path / "ds", n=1)
    line = _refused(tmp_path / "absent", ["bids_dir does not exist"], tmp_path / "absent")
    assert "participants.tsv" not in line
    ptsv = root / "participants.tsv"
    ptsv.write_bytes("participant_id\tdiagnosis\tage\tsex\nsub-01\tCN\t70\tF\u00e9\n".encode("latin-1"))
    _refused(root, ["not UTF-8", "0xe9"], ptsv)
    ptsv.unlink()
    _refused(root, ["missing"], ptsv)


def test_comma_separated_participants_tsv(tmp_path):
    root = _dataset(tmp_path / "ds", n=1)
    pd.read_csv(root / "participants.tsv", sep="\t").to_csv(root / "participants.tsv", index=False)
    line = _refused(root, ["comma-separated", "tab-separated"], root / "participants.tsv")
    assert "missing column" not in line


def test_na_diagnosis_said_in_words(tmp_path):
    root = _dataset(tmp_path / "ds", n=2)
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    table.loc[0, "diagnosis"] = "n/a"
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    line = _refused(root, ["diagnosis of sub-01 ses-01 is n/a", "dataset.participants.exclude"],
                    root / "participants.tsv")
    assert "nan" not in line


@pytest.mark.parametrize("kind", ["broken", "loop", "annex"])
def test_broken_and_looping_links(tmp_path, kind):
    root = _dataset(tmp_path / "ds", n=1)
    t1 = root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w.nii.gz"
    t1.unlink()
    if kind == "loop":
        os.symlink(t1.name, t1)
        _refused(root, ["symbolic link loop"], t1)
    else:
        target = "../../../.git/annex/objects/Xx/yY/MD5E-s1--x.nii.gz/MD5E-s1--x.nii.gz" if kind == "annex" \
            else "/nowhere/at/all.nii.gz"
        os.symlink(target, t1)
        line = _refused(root, ["broken symbolic link to " + target], t1)
        assert ("datalad get" in line) == (kind == "annex")


def test_degenerate_image(tmp_path):
    root = _dataset(tmp_path / "ds", n=1)
    t1 = root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w.nii.gz"
    _img(t1, np.random.default_rng(0).random((210, 192, 1)).astype(np.float32))
    _refused(root, ["degenerate image of 210x192x1 voxels"], t1)


def test_gzip_data_in_a_nii_file(tmp_path):
    root = _dataset(tmp_path / "ds", n=1)
    t1 = root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w.nii.gz"
    nii = t1.with_name("sub-01_ses-01_T1w.nii")
    t1.rename(nii)
    _refused(root, ["gzip-compressed data in a file named .nii", "rename it to .nii.gz"], nii)


def test_mis_cased_suffix_named(tmp_path):
    root = _dataset(tmp_path / "ds", n=1)
    t1 = root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w.nii.gz"
    lower = t1.with_name("sub-01_ses-01_t1w.nii.gz")
    t1.rename(lower)
    _refused(root, ["suffix 't1w' is not the BIDS suffix 'T1w'"], lower)


def test_pet_that_does_not_overlap_its_t1w(tmp_path):
    root = _dataset(tmp_path / "ds", n=1)
    pet = root / "sub-01" / "ses-01" / "pet" / "sub-01_ses-01_trc-FDG_pet.nii.gz"
    t1 = root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w.nii.gz"
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [500.0, 0, 0]
    _img(pet, affine=affine)
    line = _refused(root, ["does not overlap its session's T1w", "in world space"], pet)
    assert str(t1) in line
    # overlapping boxes pass
    affine[:3, 3] = [10.0, -5.0, 0]
    _img(pet, affine=affine)
    assert len(check_inputs(root, DX)[0]) == 2


# ---- the index -----------------------------------------------------------------------------------


def test_index_is_kept_and_renewed_when_the_files_change(tmp_path):
    root = _dataset(tmp_path / "ds", n=2)
    cache = tmp_path / "cache"
    first, src1 = index_dataset(root, cache)
    again, src2 = index_dataset(root, cache)
    assert (src1, src2) == ("pybids", "cache")
    pd.testing.assert_frame_equal(first.fillna("n/a").astype(str), again.fillna("n/a").astype(str))
    assert len(list(cache.glob("*.tsv"))) == 1
    _img(root / "sub-02" / "ses-02" / "anat" / "sub-02_ses-02_T1w.nii.gz")
    renewed, src3 = index_dataset(root, cache)
    assert src3 == "pybids" and "sub-02/ses-02/anat/sub-02_ses-02_T1w.nii.gz" in set(renewed.relpath)
    assert len(list(cache.glob("*.tsv"))) == 1  # the stale index is removed
    sel = discover(root, ["T1w"], cache_dir=cache)
    assert ("sub-02", "02") in set(zip(sel.scans.participant_id, sel.scans.session_id))


def test_discover_never_raises(tmp_path):
    sel = discover(tmp_path / "absent")
    assert sel.scans.empty and "does not exist" in sel.problems[0]
    (tmp_path / "file").write_text("x")
    sel = discover(tmp_path / "file")
    assert sel.scans.empty and "is not a directory" in sel.problems[0]


def test_scans_digest_changes_with_a_new_session_only_for_its_modality(tmp_path):
    root = _dataset(tmp_path / "ds", n=2)
    before = discover(root).scans
    _img(root / "sub-01" / "ses-02" / "anat" / "sub-01_ses-02_T1w.nii.gz")
    after = discover(root).scans
    assert scans_digest(before, ["T1w"], root) != scans_digest(after, ["T1w"], root)
    assert scans_digest(before, ["pet"], root) == scans_digest(after, ["pet"], root)
    # an edited diagnosis changes it too
    text = (root / "participants.tsv").read_text()
    d0 = scans_digest(after, ["pet"], root)
    (root / "participants.tsv").write_text(text.replace("AD", "CN", 1))
    assert scans_digest(after, ["pet"], root) != d0
