"""Mosaics: exact slice placement for 000's and 001's layouts, the display mosaic, the packed mosaics."""

import json

import numpy as np
import pandas as pd
import pytest

from braindl import mosaic
from braindl.io import write_tsv

L000 = {"rows": 6, "columns": 10, "axis": 2, "slices": "all", "interleave": 1}
L001 = {"rows": 4, "columns": 4, "axis": 2, "slices": "all", "interleave": 3}


def _labelled(shape):
    """A volume whose axial slice k is filled with k (and a marker in one corner of every slice)."""
    vol = np.broadcast_to(np.arange(shape[2], dtype=np.float32), shape).copy()
    vol[0, -1, :] = -1  # x = 0 (left), y = last (anterior): must land top left of its tile
    return vol


def test_000_layout_places_slice_k_in_tile_k():
    vol = _labelled((79, 95, 60))
    m = mosaic.make_mosaics(vol, L000)
    assert m.shape == (1, 570, 790)
    for k in range(60):
        r, c = divmod(k, 10)
        tile = m[0, r * 95:(r + 1) * 95, c * 79:(c + 1) * 79]
        assert tile[0, 0] == -1  # anterior up, left on the left
        assert np.all(tile[tile != -1] == k)


def test_001_layout_interleaves_three_sets_of_16():
    vol = _labelled((95, 95, 48))
    m = mosaic.make_mosaics(vol, L001)
    assert m.shape == (3, 380, 380)
    for s in range(3):
        for j in range(16):
            r, c = divmod(j, 4)
            tile = m[s, r * 95:(r + 1) * 95, c * 95:(c + 1) * 95]
            assert np.all(tile[tile != -1] == s + 3 * j)  # sets [0, 3, 6, ...], [1, 4, ...], [2, 5, ...]


def test_slice_range_unused_tiles_and_other_axes():
    vol = _labelled((8, 10, 12))
    lay = {"rows": 2, "columns": 3, "axis": 2, "slices": {"first": 3, "last": 7}, "interleave": 1}
    m = mosaic.make_mosaics(vol, lay)[0]
    assert m.shape == (20, 24)
    assert m[0, 1] == 3 and m[11, 9] == 7 and np.all(m[10:, 16:] == 0)  # 5 slices, the 6th tile empty
    sag = mosaic.make_mosaics(np.broadcast_to(np.arange(8.0)[:, None, None], (8, 10, 12)).copy(),
                              {"rows": 2, "columns": 4, "axis": 0, "slices": "all", "interleave": 1})
    assert sag.shape == (1, 24, 40) and sag[0, 13, 35] == 7


def test_layouts_that_do_not_fit_are_refused():
    with pytest.raises(mosaic.LayoutError, match="do not fit"):
        mosaic.make_mosaics(np.zeros((10, 10, 60)), L001)
    with pytest.raises(mosaic.LayoutError, match="outside"):
        mosaic.slice_sets(40, {**L000, "slices": {"first": 5, "last": 54}})
    assert mosaic.mosaic_shape((79, 95, 60), L000, 0.5) == (1, 285, 395)


def test_display_mosaic_is_slices_5_to_53_in_7x7():
    vol = _labelled((79, 95, 60))
    d = mosaic.display_mosaic(vol)
    assert d.shape == (7 * 95, 7 * 79)
    assert d[1, 1] == 5 and d[6 * 95 + 1, 6 * 79 + 1] == 53


def test_packed_mosaics_keep_the_index(tmp_path):
    vols = np.stack([_labelled((79, 95, 60)) * (i + 1) for i in range(3)]).astype(np.float16)
    np.save(tmp_path / "v.npy", vols)
    index = pd.DataFrame({"index": range(3), "participant_id": ["sub-1", "sub-2", "sub-3"], "session_id": "01"})
    write_tsv(tmp_path / "i.tsv", index)
    out = {k: tmp_path / f"m.{k}" for k in ("npy", "tsv", "json")}
    mosaic.run_mosaics(tmp_path / "v.npy", tmp_path / "i.tsv", L000, 0.5, out["npy"], out["tsv"], out["json"])
    arr = np.load(out["npy"])
    assert arr.shape == (3, 1, 285, 395) and arr.dtype == np.float16
    # area averaging of the half-size mosaic: the tile of slice 12 (row 1, column 2) holds 12 x (i + 1)
    assert arr[2, 0, 60, 100] == pytest.approx(36, rel=1e-3)
    assert pd.read_csv(out["tsv"], sep="\t")["participant_id"].tolist() == ["sub-1", "sub-2", "sub-3"]
    assert json.loads(out["json"].read_text())["Shape"] == [3, 1, 285, 395]
