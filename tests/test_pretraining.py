"""001's pre-training sweep: subsampled splits, the sweep table and figure (braindl.pretraining)."""

import json

import numpy as np
import pandas as pd
import pytest

from braindl import pretraining
from braindl.io import write_tsv


def _split(tmp_path):
    rows = []
    for i in range(40):
        dx = ["CN", "AD"][i % 2]
        s = "train" if i < 28 else ("validation" if i < 34 else "test")
        for ses in ("01", "02") if s == "train" else ("01",):
            rows.append(dict(participant_id=f"sub-{i:02d}", session_id=ses, diagnosis=dx, set=s))
    write_tsv(tmp_path / "split.tsv", pd.DataFrame(rows))
    return tmp_path / "split.tsv"


def test_size_labels():
    assert pretraining.size_label(0.25) == "025" and pretraining.size_label(1.0) == "100"
    with pytest.raises(ValueError):
        pretraining.size_label(0)


def test_subsample_keeps_a_stratified_fraction_of_training_participants(tmp_path):
    src = _split(tmp_path)
    out = pretraining.subsample_split(src, 0.5, 3, tmp_path / "half.tsv")
    full = pd.read_csv(src, sep="\t", dtype=str)
    train = out[out.set == "train"]
    assert train.participant_id.nunique() == 14
    assert train.drop_duplicates("participant_id").diagnosis.value_counts().to_dict() == {"CN": 7, "AD": 7}
    # a kept participant keeps all sessions; validation and test are untouched
    assert (train.groupby("participant_id").size() == 2).all()
    pd.testing.assert_frame_equal(out[out.set != "train"].reset_index(drop=True),
                                  full[full.set != "train"].reset_index(drop=True), check_dtype=False)
    again = pretraining.subsample_split(src, 0.5, 3, tmp_path / "again.tsv")
    assert set(again.participant_id) == set(out.participant_id)
    tiny = pretraining.subsample_split(src, 0.01, 3, tmp_path / "tiny.tsv")
    assert tiny[tiny.set == "train"].drop_duplicates("participant_id").diagnosis.value_counts().to_dict() == {
        "CN": 1, "AD": 1}


def test_sweep_table_and_figure(tmp_path):
    src = _split(tmp_path)
    rng = np.random.default_rng(0)
    runs = []
    for source, skill in (("none", 0.3), ("050", 0.6), ("100", 0.9)):
        split = None if source == "none" else pretraining.subsample_split(src, int(source) / 100, 0,
                                                                           tmp_path / f"s{source}.tsv")
        for k in (1, 2):
            truth = rng.integers(0, 2, 30)
            p_ad = np.clip(np.where(truth == 1, 0.5 + skill / 2, 0.5 - skill / 2) + rng.normal(0, 0.25, 30), 0, 1)
            pred = pd.DataFrame(dict(participant_id=[f"s{i}" for i in range(30)], session_id="01", set="test",
                                     truth=np.array(["CN", "AD"])[truth], prob_CN=1 - p_ad, prob_AD=p_ad))
            pred["predicted"] = np.where(p_ad > 0.5, "AD", "CN")
            write_tsv(tmp_path / f"{source}{k}_p.tsv", pred)
            (tmp_path / f"{source}{k}_s.json").write_text(json.dumps(dict(classes=["CN", "AD"], epochs=3, seconds=1.0)))
            runs.append(dict(source=source, split=k, run=1, predictions=str(tmp_path / f"{source}{k}_p.tsv"),
                             summary=str(tmp_path / f"{source}{k}_s.json"),
                             pretrain_split=None if split is None else str(tmp_path / f"s{source}.tsv")))
    pretraining.run_sweep_table(runs, tmp_path / "sweep.tsv")
    table = pd.read_csv(tmp_path / "sweep.tsv", sep="\t", dtype={"source": str})
    assert len(table) == 6
    assert table.groupby("source")["n_pretrain"].first().to_dict() == {"none": 0, "050": 14, "100": 28}
    auc = table.groupby("source")["roc_auc"].mean()
    assert auc["100"] > auc["050"] > auc["none"]
    # the figure: mean AUC per pre-training size against its mean number of participants, and the
    # not-pre-trained runs' mean as a horizontal line
    shown = pretraining.sweep_figure(tmp_path / "sweep.tsv", tmp_path / "sweep.png", {"dpi": 60})
    curve = shown[shown.label == "pre-trained, then fine-tuned"]
    assert curve.x.tolist() == [14, 28] and curve.y.tolist() == pytest.approx([auc["050"], auc["100"]])
    ref = shown[shown.label.str.startswith("not pre-trained")]
    assert len(ref) == 2 and ref.y.tolist() == pytest.approx([auc["none"]] * 2)  # axhline: two end points
    # a regression target (001's MMSE): the figure shows the MAE
    table.drop(columns=[c for c in table.columns if c.startswith("roc_auc")]).assign(
        mae=np.arange(len(table), dtype=float)).to_csv(tmp_path / "reg.tsv", sep="\t", index=False)
    shown = pretraining.sweep_figure(tmp_path / "reg.tsv", tmp_path / "reg.png", {"dpi": 60})
    mae = pd.read_csv(tmp_path / "reg.tsv", sep="\t", dtype={"source": str}).groupby("source")["mae"].mean()
    curve = shown[shown.label == "pre-trained, then fine-tuned"]
    assert curve.y.tolist() == pytest.approx([mae["050"], mae["100"]])
