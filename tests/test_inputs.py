"""Input contract: every fault is reported at once, naming its file."""

import gzip
import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from braindl.inputs import InputError, check_inputs, discover

DX = ["CN", "AD"]


def _img(path, data=None, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.random.default_rng(0).random((8, 9, 10)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.2, 1.2, 1.2, 1.0]) if affine is None else affine), str(path))
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
    man = check_inputs(root, DX)
    assert len(man) == 3 * 2 * 2
    assert set(man.columns) >= {"participant_id", "session_id", "modality", "path", "diagnosis", "shape",
                                "voxel_size_mm", "orientation"}
    assert set(man["shape"]) == {"8x9x10"}
    assert set(man["orientation"]) == {"RAS"}


def test_dataset_without_sessions_is_one_session(tmp_path):
    _img(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii")
    pd.DataFrame([dict(participant_id="sub-01", diagnosis="CN", age=70, sex="M")]).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    files = discover(tmp_path, ["T1w"])
    assert list(files["session_id"]) == ["01"]
    assert len(check_inputs(tmp_path, DX, ["T1w"])) == 1


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
    _img(t1(2), np.ones((8, 9, 10, 4), np.float32))
    # NaN and Inf
    bad = np.random.default_rng(1).random((8, 9, 10)).astype(np.float32)
    bad[0, 0, 0] = np.nan
    _img(t1(3), bad)
    bad = np.random.default_rng(2).random((8, 9, 10)).astype(np.float32)
    bad[1, 1, 1] = np.inf
    _img(pet(3), bad)
    # empty image
    _img(t1(4), np.zeros((8, 9, 10), np.float32))
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
    # listed participant without images
    for f in (t1(7), pet(7)):
        f.unlink()
    # empty file
    pet(8).write_bytes(b"")

    with pytest.raises(InputError) as err:
        check_inputs(root, DX)
    msg = str(err.value)
    expect = [
        (t1(1), "not a readable NIfTI"),
        (pet(1), "corrupt or truncated"),
        (t1(2), "not 3D"),
        (t1(3), "NaN"),
        (pet(3), "infinite"),
        (t1(4), "empty image"),
        (pet(4), "missing file"),
        (root / "participants.tsv", "diagnosis 'XYZ' of sub-05"),
        (root / "participants.tsv", "duplicate participant sub-06"),
        (root / "sub-99", "not in participants.tsv"),
        (root / "sub-99", "ses-01 has no pet image"),
        (root / "sub-07", "no T1w/pet image for participant sub-07"),
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
    with pytest.raises(InputError, match="does not exist"):
        check_inputs(tmp_path / "nope", DX)


def test_missing_columns_named(tmp_path):
    root = _dataset(tmp_path, n=1)
    pd.DataFrame([dict(participant_id="sub-01", age=3)]).to_csv(root / "participants.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="missing column.*diagnosis.*sex"):
        check_inputs(root, DX)


def test_two_images_in_one_session_refused(tmp_path):
    root = _dataset(tmp_path, n=1)
    _img(root / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_run-2_T1w.nii.gz")
    with pytest.raises(InputError, match="2 T1w images in ses-01"):
        check_inputs(root, DX)


def test_session_missing_a_modality_refused(tmp_path):
    root = _dataset(tmp_path, n=2)
    os.unlink(root / "sub-02" / "ses-01" / "pet" / "sub-02_ses-01_trc-FDG_pet.nii.gz")
    with pytest.raises(InputError, match=r"sub-02: ses-01 has no pet image"):
        check_inputs(root, DX)
    # a T1w-only study does not ask for PET
    assert len(check_inputs(root, DX, ["T1w"])) == 2
