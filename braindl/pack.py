"""Pack the preprocessed volumes of one variant and modality into one array file.

Training reads a single ``.npy`` (memory-mapped, no NIfTI decoding per step)
and an index table with one row per volume: participant, session, clinical
data and the QC verdict of the variant. Scans that failed QC are packed too
(the index says so) and left out by training; a figure of the variant states
how many.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from braindl.io import atomic_path, write_json, write_tsv

DTYPES = {"float16": np.float16, "float32": np.float32}


def pack_volumes(paths: list, out_npy, dtype: str = "float16", same_grid: bool = True) -> tuple[tuple[int, ...], np.ndarray]:
    """Stack same-shaped NIfTI volumes into ``out_npy`` (N, X, Y, Z); returns (shape, affine of the first).

    ``same_grid``: the volumes must also share one voxel-to-world map (template
    space); the ``none`` variant's crops each keep their scanner's world.
    """
    if not paths:
        raise ValueError(f"{out_npy}: no volume to pack")
    first = nib.load(str(paths[0]))
    shape, affine = tuple(first.shape), first.affine
    with atomic_path(out_npy) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=DTYPES[dtype], shape=(len(paths), *shape))
        for i, p in enumerate(paths):
            img = nib.load(str(p))
            if tuple(img.shape) != shape or (same_grid and not np.allclose(img.affine, affine, atol=1e-4)):
                raise ValueError(f"{p}: shape {img.shape} / grid differs from {paths[0]} {shape}; "
                                 "every volume of a pack must share the crop box")
            arr[i] = np.asarray(img.dataobj, dtype=np.float32)
        arr.flush()
        del arr
    return (len(paths), *shape), affine


def pack_index(manifest: pd.DataFrame, qc: pd.DataFrame, modality: str, paths: dict) -> pd.DataFrame:
    """Index rows (in pack order) for ``paths`` {(participant_id, session_id): path}."""
    man = manifest[manifest["modality"] == modality].copy()
    man["session_id"] = man["session_id"].astype(str).str.replace("ses-", "", regex=False)
    q = qc[qc["modality"] == modality].copy()
    q["session_id"] = q["session_id"].astype(str).str.replace("ses-", "", regex=False)
    rows = []
    for i, ((pid, ses), path) in enumerate(paths.items()):
        m = man[(man.participant_id == pid) & (man.session_id == ses)]
        if m.empty:
            raise ValueError(f"{path}: {pid} ses-{ses} is not in the manifest")
        r = q[(q.participant_id == pid) & (q.session_id == ses)]
        passed = bool(r["qc_pass"].iloc[0]) if len(r) else True
        reasons = "" if r.empty or pd.isna(r["qc_reasons"].iloc[0]) else str(r["qc_reasons"].iloc[0])
        m = m.iloc[0]
        rows.append(dict(index=i, participant_id=pid, session_id=ses, diagnosis=m["diagnosis"], age=m["age"],
                         sex=m["sex"], mmse=m.get("mmse", np.nan), qc_pass=passed, qc_reasons=reasons,
                         path=str(path)))
    return pd.DataFrame(rows)


def run_pack(volumes: dict, manifest_tsv, qc_tsv, modality: str, variant: str, dtype: str,
             out_npy, out_index, out_json) -> None:
    """Pack ``volumes`` {(participant_id, session_id): cropped NIfTI} of one variant and modality."""
    manifest = pd.read_csv(manifest_tsv, sep="\t", dtype={"participant_id": str, "session_id": str})
    qc = pd.read_csv(qc_tsv, sep="\t", dtype={"participant_id": str, "session_id": str})
    index = pack_index(manifest, qc, modality, volumes)
    shape, affine = pack_volumes(list(volumes.values()), out_npy, dtype, same_grid=variant != "none")
    write_tsv(Path(out_index), index)
    write_json(out_json, dict(Variant=variant, Modality=modality, Shape=list(shape), DType=dtype,
                              Affine=np.asarray(affine).round(6).tolist(), InTemplateSpace=variant != "none", QCFailed=int((~index.qc_pass).sum())))


def load_pack(npy, index_tsv) -> tuple[np.ndarray, pd.DataFrame]:
    """Memory-mapped volumes and their index."""
    arr = np.load(str(npy), mmap_mode="r")
    index = pd.read_csv(index_tsv, sep="\t", dtype={"participant_id": str, "session_id": str})
    if len(index) != arr.shape[0]:
        raise ValueError(f"{index_tsv}: {len(index)} rows for {arr.shape[0]} volumes in {npy}")
    return arr, index
