"""Input contract: discover a BIDS dataset and check it before any expensive work.

A dataset is ``participants.tsv`` (participant_id, diagnosis, age, sex, optional
mmse and site) plus ``sub-<label>/[ses-<label>/]anat/*_T1w.nii[.gz]`` and
``.../pet/*_pet.nii[.gz]``. A dataset without session folders is treated as one
session, ``ses-01``, in the results.

:func:`discover` only lists files (cheap enough for Snakefile parse time);
:func:`check_inputs` reads every image and reports all problems at once.
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

SUFFIX = {"T1w": ("anat", "_T1w"), "pet": ("pet", "_pet")}
REQUIRED_COLUMNS = ("participant_id", "diagnosis", "age", "sex")
DEFAULT_SESSION = "01"


class InputError(ValueError):
    """Raised with every problem found in the input, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the input:\n  - " + "\n  - ".join(self.problems))


def discover(bids_dir, modalities=("T1w", "pet")) -> pd.DataFrame:
    """Image files of a BIDS dataset: participant_id, session_id, modality, path.

    Lists files only; no image is opened. Sessions are labelled without the
    ``ses-`` prefix; a dataset without session folders gets ``01``.
    """
    root = Path(bids_dir)
    rows = []
    for sub_dir in sorted(root.glob("sub-*")):
        if not sub_dir.is_dir():
            continue
        ses_dirs = sorted(d for d in sub_dir.glob("ses-*") if d.is_dir()) or [None]
        for ses_dir in ses_dirs:
            base = ses_dir if ses_dir is not None else sub_dir
            ses = ses_dir.name[4:] if ses_dir is not None else DEFAULT_SESSION
            for mod in modalities:
                folder, suffix = SUFFIX[mod]
                for f in sorted((base / folder).glob(f"{sub_dir.name}*{suffix}.nii*")):
                    if re.fullmatch(rf"{sub_dir.name}(_[^/]*)?{suffix}\.nii(\.gz)?", f.name):
                        rows.append(dict(participant_id=sub_dir.name, session_id=ses, modality=mod, path=str(f)))
    return pd.DataFrame(rows, columns=["participant_id", "session_id", "modality", "path"])


def read_participants(bids_dir) -> tuple[pd.DataFrame | None, list[str]]:
    """participants.tsv and the problems found in it (missing file, columns, duplicates)."""
    path = Path(bids_dir) / "participants.tsv"
    if not path.is_file():
        return None, [f"{path}: missing (every BIDS dataset needs participants.tsv)"]
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, na_values=["n/a"], keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is reported
        return None, [f"{path}: unreadable ({exc})"]
    problems = []
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        problems.append(f"{path}: missing column(s) {', '.join(missing)}")
        return None, problems
    dup = table["participant_id"][table["participant_id"].duplicated()].unique()
    for pid in dup:
        problems.append(f"{path}: duplicate participant {pid}")
    for pid in table["participant_id"]:
        if not re.fullmatch(r"sub-[A-Za-z0-9]+", str(pid)):
            problems.append(f"{path}: participant_id {pid!r} is not of the form sub-<label>")
    for col in ("age", "mmse"):
        if col in table.columns:
            bad = table[col].notna() & pd.to_numeric(table[col], errors="coerce").isna()
            for pid, val in zip(table.loc[bad, "participant_id"], table.loc[bad, col]):
                problems.append(f"{path}: {col} of {pid} is not a number ({val!r})")
    return table, problems


def check_image(path) -> tuple[dict, list[str]]:
    """Read one image completely; return its header summary and its problems."""
    path = Path(path)
    info = {"shape": "", "voxel_size_mm": "", "orientation": ""}
    if not path.exists():
        return info, [f"{path}: missing file (broken link?)"]
    if path.stat().st_size == 0:
        return info, [f"{path}: empty file (0 bytes)"]
    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001
        return info, [f"{path}: not a readable NIfTI ({type(exc).__name__}: {exc})"]
    shape = img.shape
    info["shape"] = "x".join(str(s) for s in shape)
    if len(shape) != 3 and not (len(shape) == 4 and shape[3] == 1):
        return info, [f"{path}: image is not 3D (shape {shape})"]
    zooms = img.header.get_zooms()[:3]
    info["voxel_size_mm"] = "x".join(f"{z:.3g}" for z in zooms)
    problems = []
    if not np.all(np.isfinite(img.affine)) or abs(np.linalg.det(img.affine[:3, :3])) < 1e-9:
        problems.append(f"{path}: invalid affine in the header")
    else:
        info["orientation"] = "".join(nib.aff2axcodes(img.affine))
    if any(not math.isfinite(z) or z <= 0 for z in zooms):
        problems.append(f"{path}: invalid voxel size {zooms}")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data
        return info, problems + [f"{path}: corrupt or truncated image data ({type(exc).__name__}: {exc})"]
    if np.issubdtype(data.dtype, np.floating):
        n_nan, n_inf = int(np.isnan(data).sum()), int(np.isinf(data).sum())
        if n_nan:
            problems.append(f"{path}: {n_nan} NaN voxel(s)")
        if n_inf:
            problems.append(f"{path}: {n_inf} infinite voxel(s)")
        finite = data[np.isfinite(data)]
    else:
        finite = data.ravel()
    if finite.size == 0 or float(finite.max()) == float(finite.min()):
        problems.append(f"{path}: empty image (all voxels equal)")
    return info, problems


def check_inputs(bids_dir, diagnoses, modalities=("T1w", "pet"), threads: int = 1) -> pd.DataFrame:
    """Check a BIDS dataset; return the manifest or raise :class:`InputError`.

    The manifest has one row per image with the participant's clinical data and
    the image's shape, voxel size and orientation. Every problem (missing or
    unreadable files, corrupt or truncated NIfTI, images that are not 3D, NaN or
    Inf voxels, empty images, unknown diagnosis labels, duplicate participants,
    sessions of unknown participants, participants without images, sessions
    missing a modality) is collected
    and reported together, each naming its file.
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise InputError([f"{root}: BIDS directory does not exist"])
    participants, problems = read_participants(root)
    files = discover(root, modalities)
    known = set(diagnoses)
    if participants is not None:
        ptsv = root / "participants.tsv"
        for pid, dx in zip(participants["participant_id"], participants["diagnosis"]):
            if dx not in known:
                problems.append(f"{ptsv}: diagnosis {dx!r} of {pid} is not one of {sorted(known)} (dataset.diagnoses)")
        listed = set(participants["participant_id"])
        for pid in sorted(set(files["participant_id"]) - listed):
            sess = files.loc[files["participant_id"] == pid, "session_id"].unique()
            problems.append(f"{root / pid}: session(s) {', '.join('ses-' + s for s in sess)} "
                            f"of participant {pid}, who is not in participants.tsv")
        for pid in sorted(listed - set(files["participant_id"])):
            problems.append(f"{root / pid}: no {'/'.join(modalities)} image for participant {pid} "
                            f"listed in participants.tsv")
    for (pid, ses), grp in files.groupby(["participant_id", "session_id"]):
        missing = [m for m in modalities if m not in set(grp["modality"])]
        if missing:
            problems.append(f"{root / pid}: ses-{ses} has no {', '.join(missing)} image "
                            f"(dataset.modalities asks for {', '.join(modalities)} in every session)")
    for (pid, ses, mod), grp in files.groupby(["participant_id", "session_id", "modality"]):
        if len(grp) > 1:
            problems.append(f"{root / pid}: {len(grp)} {mod} images in ses-{ses} "
                            f"({', '.join(Path(p).name for p in grp['path'])}); keep one")
    with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
        results = list(pool.map(check_image, files["path"]))
    infos = []
    for info, probs in results:
        infos.append(info)
        problems.extend(probs)
    if problems:
        raise InputError(problems)
    manifest = pd.concat([files.reset_index(drop=True), pd.DataFrame(infos)], axis=1)
    manifest = manifest.merge(participants, on="participant_id", how="left")
    return manifest.sort_values(["participant_id", "session_id", "modality"]).reset_index(drop=True)


def run_check(bids_dir, diagnoses, modalities, out_tsv, threads: int = 1) -> None:
    """Check the dataset and write the manifest TSV (nothing is written on failure)."""
    from braindl.io import write_tsv

    write_tsv(out_tsv, check_inputs(bids_dir, diagnoses, modalities, threads))
