"""A small dataset in the layout of Clinica's ``adni-to-bids``, from heads ``braindl.synthetic`` did not make.

Clinica writes ADNI as ``sub-ADNI<site>S<id>/ses-M<months>/``: T1w images with a
``run-`` entity where a visit was acquired twice, PET images with ``trc-`` (tracer)
and ``rec-`` entities (often FDG and amyloid in one session), many sessions with a
T1w and no PET, and a ``sub-*_sessions.tsv`` with a diagnosis per session. The
heads are tests/posed_heads.py's (template through a random pose, shell skull, no
warp); each session's PET is that head's brain, blurred, in the same world as its
T1w on a coarser grid.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from posed_heads import head_model, posed_head

FDG, AV45 = "trc-18FFDG_rec-coregiso", "trc-18FAV45_rec-coregiso"
#: participant -> session -> (diagnosis, age, files: T1w runs, PET entity strings)
DESIGN = {
    "sub-ADNI011S0002": {"M000": ("CN", 74.3, ["run-01", "run-02"], [FDG, AV45]),
                         "M012": ("CN", 75.3, ["run-01"], [])},
    "sub-ADNI022S0004": {"M000": ("MCI", 68.1, ["run-01"], [FDG]),
                         "M012": ("AD", 69.1, ["run-01"], []),
                         "M024": ("AD", 70.1, [], [FDG])},  # PET without a T1w
}


def pet_like(t1_path, mask_path, seed: int, voxel_mm: float = 2.5) -> nib.Nifti1Image:
    """A PET-like image of a T1w head: FDG-like uptake (grey matter 1, white matter 0.3, CSF and
    outside the brain 0), blurred to about 6 mm, on a coarser grid covering the same world."""
    img = nib.load(str(t1_path))
    t1 = np.asarray(img.dataobj, np.float32)
    brain = np.asarray(nib.load(str(mask_path)).dataobj) > 0
    rel = t1 / np.percentile(t1[brain], 95)
    uptake = np.where(brain, np.exp(-(((rel - 0.62) / 0.12) ** 2)) + 0.3 * (rel > 0.8), 0).astype(np.float32)
    zooms = np.array(img.header.get_zooms()[:3])
    uptake = ndimage.gaussian_filter(uptake, 2.5 / zooms)
    factor = voxel_mm / zooms
    shape = tuple(int(n // f) for n, f in zip(t1.shape, factor))
    coarse = ndimage.affine_transform(uptake, np.diag(factor), output_shape=shape, order=1)
    coarse += np.random.default_rng(seed).normal(0, 0.02, shape).astype(np.float32)
    affine = img.affine @ np.diag([*factor, 1.0])
    return nib.Nifti1Image(np.clip(coarse, 0, None).astype(np.float32), affine)


def adni_dataset(root, voxel_mm: float = 1.6) -> dict:
    """Write :data:`DESIGN` under ``root``; return {(participant, session, modality): the file the
    workflow should select} with the default filters, runs: last and pet {trc: 18FFDG}."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "ADNI (test layout)", "BIDSVersion": "1.8.0"}))
    (root / "participants.tsv").write_text("participant_id\talternative_id_1\tsex\n"
                                           "sub-ADNI011S0002\t011_S_0002\tM\nsub-ADNI022S0004\t022_S_0004\tF\n")
    model = head_model()
    expected = {}
    for k, (pid, sessions) in enumerate(DESIGN.items()):
        rows = ["session_id\tage\tdiagnosis\tMMS"]
        for j, (ses, (dx, age, runs, pets)) in enumerate(sessions.items()):
            rows.append(f"ses-{ses}\t{age}\t{dx}\t{29 - 3 * j}")
            d = root / pid / f"ses-{ses}"
            pre = f"{pid}_ses-{ses}"
            head = posed_head(root / ".heads", f"{pre}", seed=100 * k + j, model=model, voxel_mm=voxel_mm)
            for run in runs:
                t1 = d / "anat" / f"{pre}_{run}_T1w.nii.gz"
                t1.parent.mkdir(parents=True, exist_ok=True)
                Path(head["T1w"]).replace(t1) if run == runs[-1] else t1.write_bytes(Path(head["T1w"]).read_bytes())
                (d / "anat" / f"{pre}_{run}_T1w.json").write_text("{}")
            if runs:
                expected[(pid, ses, "T1w")] = str(d / "anat" / f"{pre}_{runs[-1]}_T1w.nii.gz")
            source = str(d / "anat" / f"{pre}_{runs[-1]}_T1w.nii.gz") if runs else head["T1w"]
            mask = head["mask"]
            for pet in pets:
                path = d / "pet" / f"{pre}_{pet}_pet.nii.gz"
                path.parent.mkdir(parents=True, exist_ok=True)
                nib.save(pet_like(source, mask, seed=zlib.crc32(pet.encode()) % 1000), str(path))
                if pet == FDG and runs:
                    expected[(pid, ses, "pet")] = str(path)
        (root / pid / f"{pid}_sessions.tsv").write_text("\n".join(rows) + "\n")
    for f in (root / ".heads").glob("*"):
        f.unlink()
    (root / ".heads").rmdir()
    return expected
