"""3D volume -> 2D mosaics (PROTOCOLS.md section 3).

A layout takes the slices of a volume along ``axis`` (``slices``: all, or
``{first, last}`` inclusive), splits them into ``interleave`` sets (set ``i``
holds slices ``i, i + interleave, ...``, 001's three interleaved sets) and lays
each set out row by row in a ``rows`` x ``columns`` grid; unused tiles are 0.

* 000: the 60 axial slices of a 79x95x60 (x, y, z) crop, 6 x 10 tiles of
  95 x 79 -> one 570 x 790 image.
* 001: 48 axial slices, three interleaved sets of 16, each 4 x 4 -> three
  mosaics per scan (the three are training augmentation and a test-time
  ensemble).

Tiles are shown in the neurological convention: for an axial slice of a RAS
array, anterior at the top and the subject's left on the left (``np.rot90`` of
the slice). Slices are ordered caudal -> cranial (increasing index).

Grey-scale mosaics are stored with one channel; the 2D backbones replicate
it to three channels on the device (:mod:`braindl.backbones`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from braindl.io import atomic_path, write_json, write_tsv
from braindl.pack import load_pack

# 000 Fig. 6: "axial slices 5 to 54" in 7 x 7 = 49 tiles, read as range(5, 54)
DISPLAY = {"rows": 7, "columns": 7, "axis": 2, "slices": {"first": 5, "last": 53}, "interleave": 1}


class LayoutError(ValueError):
    """A layout that does not fit the volume."""


def slice_sets(n_slices: int, layout: dict) -> list[list[int]]:
    """Slice indices of each mosaic of ``layout`` for a volume with ``n_slices`` along the axis."""
    sel = layout["slices"]
    if sel == "all":
        idx = list(range(n_slices))
    else:
        first, last = int(sel["first"]), int(sel["last"])
        if not 0 <= first <= last < n_slices:
            raise LayoutError(f"slices {first}..{last} outside the volume's {n_slices} slices")
        idx = list(range(first, last + 1))
    k = int(layout["interleave"])
    sets = [idx[i::k] for i in range(k)]
    cap = int(layout["rows"]) * int(layout["columns"])
    if max(len(s) for s in sets) > cap:
        raise LayoutError(f"{len(idx)} slices in {k} set(s) of up to {max(len(s) for s in sets)} do not fit "
                          f"a {layout['rows']} x {layout['columns']} grid")
    return sets


def tile(volume: np.ndarray, axis: int, k: int) -> np.ndarray:
    """Slice ``k`` along ``axis`` as a display tile (rot90: second axis up, first axis left to right)."""
    return np.rot90(np.take(volume, k, axis=axis))


def mosaic_shape(volume_shape, layout: dict, scale: float = 1.0) -> tuple[int, int, int]:
    """(number of mosaics, height, width) of ``layout`` on volumes of ``volume_shape``."""
    axis = int(layout["axis"])
    n_sets = len(slice_sets(volume_shape[axis], layout))
    plane = [s for i, s in enumerate(volume_shape) if i != axis]
    th, tw = plane[1], plane[0]  # rot90 swaps the two in-plane axes
    h, w = th * int(layout["rows"]), tw * int(layout["columns"])
    return n_sets, int(round(h * scale)), int(round(w * scale))


def make_mosaics(volume: np.ndarray, layout: dict) -> np.ndarray:
    """All mosaics of one volume: (interleave, rows x tile height, columns x tile width)."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise LayoutError(f"a mosaic needs a 3D volume, got shape {volume.shape}")
    axis = int(layout["axis"])
    rows, cols = int(layout["rows"]), int(layout["columns"])
    sets = slice_sets(volume.shape[axis], layout)
    th, tw = tile(volume, axis, 0).shape
    out = np.zeros((len(sets), rows * th, cols * tw), dtype=volume.dtype)
    for s, idx in enumerate(sets):
        for j, k in enumerate(idx):
            r, c = divmod(j, cols)
            out[s, r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tile(volume, axis, k)
    return out


def resize(images: np.ndarray, scale: float) -> np.ndarray:
    """Resize (n, H, W) images by ``scale`` (area averaging when shrinking, bilinear when growing)."""
    if scale == 1.0:
        return images
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)
    size = (int(round(images.shape[1] * scale)), int(round(images.shape[2] * scale)))
    mode = "area" if scale < 1 else "bilinear"
    out = F.interpolate(t, size=size, mode=mode, **({} if mode == "area" else {"align_corners": False}))
    return out[:, 0].numpy()


def display_mosaic(volume: np.ndarray, layout: dict | None = None) -> np.ndarray:
    """000's display mosaic (axial slices 5 to 54 in 7 x 7) of a volume or heatmap, as one 2D image."""
    return make_mosaics(volume, layout or DISPLAY)[0]


def run_mosaics(pack_npy, pack_index, layout: dict, scale: float, out_npy, out_index, out_json) -> None:
    """Mosaics of every packed volume: (N, interleave, H, W) float16, the pack's index copied beside it."""
    vols, index = load_pack(pack_npy, pack_index)
    if vols.ndim != 4:
        raise LayoutError(f"{pack_npy}: expected (N, X, Y, Z) volumes, got shape {vols.shape}")
    try:
        n_sets, h, w = mosaic_shape(vols.shape[1:], layout, scale)
    except LayoutError as err:
        raise LayoutError(f"{pack_npy}: volumes of shape {vols.shape[1:]}: {err}") from None
    with atomic_path(out_npy) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(vols.shape[0], n_sets, h, w))
        for i in range(vols.shape[0]):
            arr[i] = resize(make_mosaics(np.asarray(vols[i], dtype=np.float32), layout), scale)
        arr.flush()
        del arr
    write_tsv(Path(out_index), index)
    write_json(out_json, dict(Source=str(Path(pack_npy).name), Layout=dict(layout),
                              Scale=scale, Shape=[int(vols.shape[0]), n_sets, h, w], DType="float16"))
