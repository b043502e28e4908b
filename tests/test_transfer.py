"""000's comparison table, ROC and embedding figures (braindl.transfer)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm
from sklearn.metrics import accuracy_score, balanced_accuracy_score, normalized_mutual_info_score

from braindl import figures, models, transfer
from braindl.io import write_tsv

CLASSES = ["CN", "AD", "DLB"]


def _run(tmp_path, name, rng, n=30, skill=0.8, seconds=12.0):
    rows = []
    for which in ("validation", "test"):
        truth = rng.integers(0, 3, n)
        proba = rng.dirichlet(np.ones(3), n)
        good = rng.random(n) < skill
        proba[good, truth[good]] += 1.0
        proba /= proba.sum(1, keepdims=True)
        for t, p in zip(truth, proba):
            rows.append(dict(participant_id=f"sub-{len(rows):03d}", session_id="01", diagnosis=CLASSES[t], set=which,
                             truth=CLASSES[t], predicted=CLASSES[p.argmax()], **{f"prob_{c}": p[i] for i, c in enumerate(CLASSES)}))
    pred = tmp_path / f"{name}_predictions.tsv"
    write_tsv(pred, pd.DataFrame(rows))
    summ = tmp_path / f"{name}_summary.json"
    summ.write_text(json.dumps(dict(classes=CLASSES, model="resnet18", input="mosaic", weights=None, pretrained=None,
                                    freeze="none", trainable_parameters=1234, seconds=seconds, epochs=7)))
    return {"predictions": str(pred), "summary": str(summ)}


def test_comparison_table_averages_runs_per_task_and_model(tmp_path):
    rng = np.random.default_rng(0)
    runs = [dict(task="CN_AD_DLB", arm=arm, split=f"{s:02d}", run="01",
                 **_run(tmp_path, f"{arm}{s}", rng, skill=skill, seconds=10.0 * s))
            for arm, skill in (("cnn3d", 0.7), ("resnet18", 0.2)) for s in (1, 2)]
    table = transfer.comparison_table(runs, n_boot=200, ci=0.95).set_index("model")
    assert list(table.index) == ["cnn3d", "resnet18"]
    # per run, then the mean over runs (the two runs test the same participants: pooling would count them twice)
    per_run = []
    for r in runs[:2]:
        test = pd.read_csv(r["predictions"], sep="\t").query("set == 'test'")
        truth, pred = test["truth"], [CLASSES[i] for i in test[[f"prob_{c}" for c in CLASSES]].to_numpy().argmax(1)]
        per_run.append((accuracy_score(truth, pred), balanced_accuracy_score(truth, pred),
                        normalized_mutual_info_score(truth, pred)))
    row = table.loc["cnn3d"]
    acc, bacc, nmi = np.mean(per_run, axis=0)
    assert row["test_accuracy"] == pytest.approx(acc)
    assert row["test_balanced_accuracy"] == pytest.approx(bacc)
    assert row["test_nmi"] == pytest.approx(nmi)
    assert row["test_accuracy_lo"] < row["test_accuracy"] < row["test_accuracy_hi"]
    assert row["validation_accuracy_lo"] < row["validation_accuracy"] < row["validation_accuracy_hi"]
    assert row["n_runs"] == 2 and row["n_test"] == 30 and row["n_test_participants"] == 30
    assert row["train_seconds"] == pytest.approx(15.0)
    assert table.loc["cnn3d", "test_accuracy"] > table.loc["resnet18", "test_accuracy"]
    # 003's metrics, one-vs-rest and macro-averaged over the classes (scikit-learn's), the mean over runs;
    # G-mean: the square root of the macro sensitivity and specificity
    prec, f1, auc, gmean = [], [], [], []
    for r in runs[:2]:
        test = pd.read_csv(r["predictions"], sep="\t").query("set == 'test'")
        proba = test[[f"prob_{c}" for c in CLASSES]].to_numpy()
        truth, pred = test["truth"], [CLASSES[i] for i in proba.argmax(1)]
        prec.append(skm.precision_score(truth, pred, average="macro", zero_division=0))
        f1.append(skm.f1_score(truth, pred, average="macro"))
        idx = truth.map(CLASSES.index).to_numpy()
        auc.append(skm.roc_auc_score(idx, proba, multi_class="ovr", average="macro", labels=[0, 1, 2]))
        cm = skm.multilabel_confusion_matrix(truth, pred, labels=CLASSES)  # per class [[tn, fp], [fn, tp]]
        sens = np.mean(cm[:, 1, 1] / cm[:, 1].sum(1))
        spec = np.mean(cm[:, 0, 0] / cm[:, 0].sum(1))
        gmean.append(np.sqrt(sens * spec))
    assert row["test_precision"] == pytest.approx(np.mean(prec))
    assert row["test_f1"] == pytest.approx(np.mean(f1))
    assert row["test_roc_auc"] == pytest.approx(np.mean(auc))
    assert row["test_g_mean"] == pytest.approx(np.mean(gmean))


def test_roc_and_metrics_figures_per_model(tmp_path):
    rng = np.random.default_rng(1)
    runs = [dict(arm=arm, **_run(tmp_path, f"{arm}{s}", rng)) for s in (1, 2) for arm in ("cnn3d", "resnet18")]
    groups = {arm: [r["predictions"] for r in runs if r["arm"] == arm] for arm in ("cnn3d", "resnet18")}
    curves = transfer.roc_figure(groups, tmp_path / "roc.png", {"dpi": 60})
    for arm, paths in groups.items():
        tables = [pd.read_csv(p, sep="\t") for p in paths]
        classes = [c[5:] for c in tables[0].columns if c.startswith("prob_")]
        want = np.mean([figures.mean_roc(t, classes) for t in tables], axis=0)
        assert curves[curves.group == arm].tpr.to_numpy() == pytest.approx(want)
    # 003's bars: per model the mean over its runs of scikit-learn's test metrics
    bars = transfer.metrics_figure(runs, tmp_path / "bars.png", {"dpi": 60})
    for arm in ("cnn3d", "resnet18"):
        tests = [pd.read_csv(r["predictions"], sep="\t").query("set == 'test'") for r in runs if r["arm"] == arm]
        want = {"accuracy": np.mean([skm.accuracy_score(t.truth, t.predicted) for t in tests]),
                "F1": np.mean([skm.f1_score(t.truth, t.predicted, average="macro") for t in tests]),
                "recall": np.mean([skm.recall_score(t.truth, t.predicted, average="macro") for t in tests])}
        got = bars[bars.label.str.startswith(f"{arm} (n=2)")].set_index("category").y
        assert got[list(want)].to_dict() == pytest.approx(want)


def test_embedding_projects_the_out_of_distribution_group(tmp_path):
    rng = np.random.default_rng(2)
    shape = (36, 40, 36)
    groups = ["CN"] * 8 + ["AD"] * 8 + ["FTLD"] * 4
    vols = np.stack([rng.normal(0.3 + 0.4 * (g == "AD"), 0.05, shape) for g in groups]).astype(np.float16)
    np.save(tmp_path / "v.npy", vols)
    index = pd.DataFrame(dict(index=range(20), participant_id=[f"sub-{i:02d}" for i in range(20)], session_id="01",
                              diagnosis=groups, qc_pass=True))
    write_tsv(tmp_path / "i.tsv", index)
    split = index[index.diagnosis != "FTLD"].assign(set=["train", "train", "validation", "test"] * 4)
    write_tsv(tmp_path / "s.tsv", split[["participant_id", "session_id", "diagnosis", "set"]])
    net = models.build_model("cnn3d_thesis", shape, 2, 0.4)
    torch.save({"model": net.state_dict(), "model_name": "cnn3d_thesis", "input": "volume", "arch": {},
                "input_shape": list(shape), "n_outputs": 2, "dropout": 0.4}, tmp_path / "m.pt")
    transfer.run_embedding(tmp_path / "m.pt", tmp_path / "v.npy", tmp_path / "i.tsv", tmp_path / "s.tsv",
                           "CN_vs_AD", ["FTLD"], tmp_path / "e.tsv", tmp_path / "e.png", {"dpi": 60})
    emb = pd.read_csv(tmp_path / "e.tsv", sep="\t")
    assert len(emb) == 20 and (emb.set == "out_of_distribution").sum() == 4
    assert set(emb[emb.set == "out_of_distribution"].diagnosis) == {"FTLD"}
    assert np.isfinite(emb[["tsne_1", "tsne_2"]].to_numpy()).all()
    assert (tmp_path / "e.png").stat().st_size > 1000
    # the penultimate features are the input of the last linear layer (FC 128 of the thesis CNN)
    feats = transfer.penultimate_features(net, torch.from_numpy(vols[:3].astype(np.float32)).unsqueeze(1), False)
    assert feats.shape == (3, 128)
