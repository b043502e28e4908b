"""Group maps of one method's heatmaps over its runs, and their figures (PROTOCOLS.md section 7).

Reads the heatmaps :mod:`braindl.heatmaps` writes (a 4D NIfTI per run with its
index table) and averages them per group: the disease class, the control class,
the outcomes TP/FP/TN/FN, and any other class of the task. Needs no torch, so
the jobs that summarise and draw heatmaps start in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from braindl import mosaic as mosaics
from braindl.io import write_nifti, write_tsv
from braindl.pack import load_pack


class HeatmapError(ValueError):
    """A method that cannot be applied to a model, or inputs that do not fit."""


# ---- group maps and figures over the runs of one method --------------------------------------------
def group_labels(target: str, control: str) -> list[str]:
    """Groups averaged: the disease class, the control class, and the four outcomes (then any other class
    of the task, as :func:`run_group_maps` meets it)."""
    return [target, control, "TP", "FP", "TN", "FN"]


def read_heatmaps(nii, tsv) -> tuple[np.ndarray, pd.DataFrame]:
    """One run's heatmaps (X, Y, Z, N) and their index; refuses a count mismatch."""
    import nibabel as nib

    img = nib.load(str(nii))
    table = pd.read_csv(tsv, sep="\t", dtype={"participant_id": str, "session_id": str})
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 3:
        data = data[..., None]
    if data.shape[-1] != len(table):
        raise HeatmapError(f"{nii}: {data.shape[-1]} heatmaps for {len(table)} rows in {tsv}")
    return data, table


def group_means(data: np.ndarray, table: pd.DataFrame, groups: list[str]) -> dict[str, np.ndarray]:
    """Mean heatmap of each non-empty group (a diagnosis matches ``truth``, an outcome ``outcome``)."""
    out = {}
    for g in groups:
        sel = (table["outcome"] == g) if g in ("TP", "FP", "TN", "FN") else (table["truth"] == g)
        if sel.any():
            out[g] = data[..., sel.to_numpy()].mean(-1)
    return out


def run_group_maps(runs: list[dict], target: str, control: str, pack_npy, pack_index, pack_json,
                   out: dict) -> pd.DataFrame:
    """Group maps of one method over its runs (``runs``: dicts with split, run, heatmaps, index).

    Writes ``out['groups']`` (4D: one mean map per group, each the mean of the
    runs' group means) with its table ``out['groups_tsv']``, ``out['runs']``
    (4D: each run's mean maps of the disease class, of its true positives and
    of its true negatives, for the robustness analysis; 004 study 3 compares
    runs "for true positive and true negative predictions") with
    ``out['runs_tsv']`` (split, run, group, volume, n_scans; volume -1 where a
    run has no such scan), and ``out['meanbrain']``: the mean of the scans the
    heatmaps were computed on (display background).
    """
    import json

    groups = group_labels(target, control)
    sums, counts, per_run, run_rows, scans = {}, {}, [], [], set()
    shape = affine = None
    for r in runs:
        data, table = read_heatmaps(r["heatmaps"], r["index"])
        shape = data.shape[:3]
        groups += sorted(set(table["truth"].astype(str)) - set(groups))  # a task's other classes (000: four)
        means = group_means(data, table, groups)
        for g, m in means.items():
            sums[g] = sums.get(g, 0) + m
            counts[g] = counts.get(g, 0) + 1
        if target not in means:  # said in the runs table, and the other runs go on
            print(f"{r['index']}: no test scan of the disease class {target}; split {r['split']} run {r['run']} "
                  "is left out of the per-run maps")
        for g in (target, "TP", "TN"):
            sel = (table["outcome"] == g) if g in ("TP", "TN") else (table["truth"] == g)
            if g in means and target in means:
                per_run.append(means[g])
                run_rows.append(dict(split=r["split"], run=r["run"], group=g, volume=len(per_run) - 1,
                                     n_scans=int(sel.sum())))
            else:
                run_rows.append(dict(split=r["split"], run=r["run"], group=g, volume=-1, n_scans=int(sel.sum())))
        if target in means:
            scans.update(zip(table.participant_id, table.session_id))
    if not per_run:
        raise HeatmapError(f"no run has a test scan of the disease class {target}: no group maps")
    affine = np.asarray(json.loads(Path(pack_json).read_text())["Affine"])
    stack = np.stack([sums[g] / counts[g] if g in sums else np.zeros(shape, np.float32) for g in groups], -1)
    gtable = pd.DataFrame(dict(group=groups, volume=range(len(groups)), n_runs=[counts.get(g, 0) for g in groups]))
    arr, index = load_pack(pack_npy, pack_index)
    rows = [i for i, key in enumerate(zip(index.participant_id, index.session_id)) if key in scans]
    if len(rows) < len(scans):
        raise HeatmapError(f"{pack_index}: {len(scans) - len(rows)} of the heatmaps' scans are not in the pack")
    brain = np.mean([np.asarray(arr[i], dtype=np.float32) for i in rows], axis=0)
    write_nifti(out["groups"], stack.astype(np.float32), affine, np.float32)
    write_tsv(out["groups_tsv"], gtable)
    write_nifti(out["runs"], np.stack(per_run, -1).astype(np.float32), affine, np.float32)
    runs_table = pd.DataFrame(run_rows)  # in run order, grouped: the disease class, TP, TN
    order = {g: i for i, g in enumerate((target, "TP", "TN"))}
    runs_table = runs_table.assign(_g=runs_table.group.map(order)).sort_values("_g", kind="stable")
    write_tsv(out["runs_tsv"], runs_table.drop(columns="_g").reset_index(drop=True))
    write_nifti(out["meanbrain"], brain, affine, np.float32)
    return gtable


def _group_map(groups_nii, groups_tsv, group):
    import nibabel as nib

    table = pd.read_csv(groups_tsv, sep="\t")
    if group not in set(table.group):
        raise HeatmapError(f"{groups_tsv}: no group {group!r}; groups: {table.group.tolist()}")
    img = nib.load(str(groups_nii))
    vol = int(table.loc[table.group == group, "volume"].iloc[0])
    return np.asarray(img.dataobj[..., vol], dtype=np.float32), img.affine


def display_slices(n_slices: int) -> np.ndarray:
    """The 49 axial slices of the display mosaic: 000's slices 5 to 53 of its 60-slice crop, or the same
    share of the axis, evenly spaced, for crops with another number of slices."""
    d = mosaics.DISPLAY["slices"]
    if n_slices == 60:
        return np.arange(d["first"], d["last"] + 1)
    return np.unique(np.rint(np.linspace(d["first"] / 60 * n_slices, d["last"] / 60 * n_slices, 49)).astype(int))


def display_figure(groups_nii, groups_tsv, meanbrain_nii, group: str, title: str, out, dpi: int = 150) -> pd.DataFrame:
    """000 Fig. 6: a group's mean heatmap over the mean brain, 49 axial slices (:func:`display_slices`)
    in a 7 x 7 mosaic."""
    from braindl.figures import save_figure  # noqa: I001 (sets the Agg backend before pyplot)
    import matplotlib.pyplot as plt
    import nibabel as nib

    heat, _ = _group_map(groups_nii, groups_tsv, group)
    brain = np.asarray(nib.load(str(meanbrain_nii)).dataobj, dtype=np.float32)
    idx = display_slices(heat.shape[2])
    layout = {**mosaics.DISPLAY, "slices": "all"}
    hm, bg = mosaics.make_mosaics(heat[..., idx], layout)[0], mosaics.make_mosaics(brain[..., idx], layout)[0]
    first, last = int(idx[0]), int(idx[-1])
    lim = float(np.abs(hm).max()) or 1.0
    fig, ax = plt.subplots(figsize=(8, 8 * hm.shape[0] / hm.shape[1]))
    ax.imshow(bg, cmap="gray")
    shown = np.ma.masked_where(np.abs(hm) < 0.1 * lim, hm)
    im = ax.imshow(shown, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.85)
    ax.set_axis_off()
    step = "" if len(idx) == last - first + 1 else f" (every {(last - first) / (len(idx) - 1):.1f})"
    ax.set_title(f"{title}\naxial slices {first}-{last}{step}, caudal to cranial; left on the left")
    fig.colorbar(im, ax=ax, fraction=0.03, label="mean relevance")
    return save_figure(fig, out, dpi)


def statmap_figure(groups_nii, groups_tsv, meanbrain_nii, group: str, title: str, out, dpi: int = 150) -> pd.DataFrame:
    """nilearn stat map of a group's mean heatmap over the mean brain (orthogonal cuts at the peak)."""
    from braindl.figures import save_figure  # noqa: I001 (sets the Agg backend before pyplot)
    import matplotlib.pyplot as plt
    import nibabel as nib
    from nilearn import plotting

    heat, affine = _group_map(groups_nii, groups_tsv, group)
    bg = nib.load(str(meanbrain_nii))
    fig = plt.figure(figsize=(9, 3.5))
    plotting.plot_stat_map(nib.Nifti1Image(heat, affine), bg_img=bg, figure=fig, title=title,
                           cut_coords=None, colorbar=True, draw_cross=False, black_bg=False)
    return save_figure(fig, out, dpi)
