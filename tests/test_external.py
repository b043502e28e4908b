"""braindl.external: the module config, predictions of a saved run on another dataset, and its metrics."""

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from braindl import external, pack, splits, training
from braindl.io import write_tsv

SHAPE = (24, 28, 24)


def _pack(root, name, n, seed, diagnoses=("CN", "AD")):
    rng = np.random.default_rng(seed)
    rows, vols = [], []
    for i in range(n):
        dx = diagnoses[i % len(diagnoses)]
        v = rng.normal(0.3, 0.1, SHAPE).astype(np.float32)
        if dx == "AD":
            v[6:14, 8:16, 6:14] += 0.8
        vols.append(v)
        rows.append(dict(index=i, participant_id=f"sub-{name}{i:03d}", session_id="01", diagnosis=dx, age=70,
                         sex="MF"[i % 2], mmse=29, qc_pass=i != 3, qc_reasons=""))
    np.save(root / f"{name}.npy", np.stack(vols).astype(np.float16))
    write_tsv(root / f"{name}.tsv", pd.DataFrame(rows))
    return root / f"{name}.npy", root / f"{name}.tsv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, default_config=None):
    root = tmp_path_factory.mktemp("ext")
    data, index = _pack(root, "main", 24, 0)
    table = pd.read_csv(index, sep="\t", dtype={"participant_id": str, "session_id": str})
    subjects = splits.subject_table(table, "CN_vs_AD", 5)
    sets = splits.make_splits(subjects, dict(method="repeated_holdout", n_splits=1, test_fraction=0.25,
                                             validation_fraction=0.25, age_bin_years=5, balance_sex=False, seed=0))[0]
    write_tsv(root / "split.tsv", splits.session_rows(subjects, sets))
    cfg = yaml.safe_load(open(__file__.replace("tests/test_external.py", "config.yaml")))
    s = {k: v for k, v in cfg["training"].items() if k not in ("tasks", "modalities", "finetune_from")}
    s.update(batch_size=4, max_epochs=3, input_pool=1, model="cnn3d_ms", early_stopping_patience=5)
    out = {k: root / f"run_{k}.{e}" for k, e in (("model", "pt"), ("history", "tsv"), ("predictions", "tsv"),
                                                 ("summary", "json"))}
    training.train_run(data, index, root / "split.tsv", "CN_vs_AD", s, 1, 1, out, root / "state", log=lambda m: None)
    return root, out


def test_predictions_are_the_saved_models_and_the_internal_path(trained):
    root, out = trained
    data, index = _pack(root, "other", 10, 5, diagnoses=("CN", "AD", "MCI"))
    table = external.predict_run(out["model"], data, index, root / "pred.tsv")
    assert len(table) == 10 and set(table["set"]) == {"external"}
    model, ck = training.load_model(out["model"])
    arr, _ = pack.load_pack(data, index)
    with torch.no_grad():
        expect = torch.softmax(model(torch.from_numpy(np.asarray(arr, np.float32)).unsqueeze(1)), 1).numpy()
    np.testing.assert_allclose(table[["prob_CN", "prob_AD"]].to_numpy(), expect, rtol=1e-5, atol=1e-6)
    # MCI is no class of the model: predicted, listed, not scored; scan 3 failed QC: not scored either
    mci = table["diagnosis"] == "MCI"
    assert (table.loc[mci, "truth"] == "n/a").all() and not table.loc[mci, "scored"].any()
    assert not table.loc[3, "scored"] and table.loc[~mci & (table.index != 3), "scored"].all()
    # the training pack through the external path gives the run's own test predictions
    main = external.predict_run(out["model"], root / "main.npy", root / "main.tsv", root / "again.tsv")
    run = pd.read_csv(out["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
    test = run[run.set == "test"].merge(main, on=["participant_id", "session_id"], suffixes=("", "_ext"))
    assert len(test) == (run.set == "test").sum() > 0
    np.testing.assert_allclose(test["prob_AD"], test["prob_AD_ext"], rtol=1e-5, atol=1e-6)
    # an unlabelled dataset: everything predicted, nothing scored
    blind = external.predict_run(out["model"], data, index, root / "blind.tsv", labelled=False)
    assert not blind["scored"].any() and (blind["truth"] == "n/a").all()


def test_metrics_are_scikit_learns_on_the_written_predictions(trained, tmp_path):
    root, out = trained
    runs, tables = [], []
    for k, seed in enumerate((11, 12)):
        data, index = _pack(tmp_path, f"d{k}", 12, seed, diagnoses=("CN", "AD", "MCI"))
        path = tmp_path / f"pred{k}.tsv"
        tables.append(external.predict_run(out["model"], data, index, path))
        runs.append(dict(variant="linear", split=f"{k + 1:02d}", run="01", predictions=path))
    metrics = external.metrics_table(runs, n_boot=50, ci=0.95)
    for row, table in zip(metrics.itertuples(), tables):
        s = table[table["scored"]]
        assert row.n_predicted == 12 and row.n_scored == len(s)
        assert row.roc_auc == pytest.approx(roc_auc_score(s["truth"] == "AD", s["prob_AD"]))
        assert row.balanced_accuracy == pytest.approx(balanced_accuracy_score(s["truth"], s["predicted"]))
        assert row.roc_auc_lo <= row.roc_auc <= row.roc_auc_hi
    internal = pd.DataFrame({"variant": "linear", "split": [1, 2], "run": 1, "roc_auc": [0.8, 0.9],
                             "roc_auc_lo": [0.6, 0.7], "roc_auc_hi": [0.9, 1.0], "balanced_accuracy": 0.75,
                             "sensitivity": 0.7, "specificity": 0.8, "n_test": 6})
    write_tsv(tmp_path / "internal.tsv", internal)
    summary = external.summary_table(runs, tmp_path / "internal.tsv", 50, 0.95).set_index(["source", "metric"])
    assert summary.loc[("internal", "roc_auc"), "mean"] == pytest.approx(0.85)
    assert summary.loc[("internal", "roc_auc"), "lo"] == pytest.approx(0.65)
    assert summary.loc[("external", "roc_auc"), "mean"] == pytest.approx(metrics["roc_auc"].mean())
    lo, hi = summary.loc[("external", "roc_auc"), ["lo", "hi"]]
    assert lo <= metrics["roc_auc"].mean() <= hi
    write_tsv(tmp_path / "summary.tsv", summary.reset_index())
    shown = external.figure(tmp_path / "summary.tsv", tmp_path / "fig.png", {"dpi": 40})
    m = shown.merge(summary.reset_index(), on=["variant", "source", "metric"], suffixes=("", "_t"))
    np.testing.assert_allclose(m["mean"], m["mean_t"])
    assert set(shown["metric"]) == {"roc_auc", "balanced_accuracy"} and len(shown) == 4
    both = external.predictions_table(runs, tmp_path / "all.tsv")
    assert len(both) == 24 and list(both.columns[:4]) == ["model", "variant", "split", "run"]


def test_module_config_moves_the_results_and_switches_experiments_off(default_config):
    cfg = {**default_config, "external": {**default_config["external"], "variants": ["syn"],
                                          "datasets": {"b": {"bids_dir": "/data/b", "labelled": False,
                                                             "filters": {"T1w": {"acq": "MPRAGE"}, "pet": {}}}}}}
    mod = external.module_config(cfg, "b")
    assert mod["results_dir"] == "results/external/b"
    assert mod["dataset"]["bids_dir"] == "/data/b" and mod["dataset"]["labelled"] is False
    assert mod["dataset"]["filters"]["T1w"] == {"acq": "MPRAGE"}
    assert mod["registration"]["variants"] == ["linear", "syn"]  # SyN starts from the linear registration
    assert mod["external"]["datasets"] == {} and mod["transfer"]["tasks"] == [] and not mod["ms_study"]["enabled"]
    assert cfg["results_dir"] == "results" and cfg["dataset"]["bids_dir"] is None  # the main config is untouched
    synth = external.module_config(default_config, "site2")
    assert synth["synthetic"]["seed"] == default_config["external"]["datasets"]["site2"]["synthetic"]["seed"]
    assert synth["synthetic"]["atlas"] == default_config["synthetic"]["atlas"]  # the rest of `synthetic` is kept
    bad = {**default_config, "external": {**default_config["external"], "tasks": ["MMSE", "CN_AD_DLB"],
                                          "datasets": {"a-b": {"bids_dir": None}}},
           "training": {**default_config["training"], "tasks": ["CN_vs_AD", "MMSE"]}}
    problems = external.check_settings(bad)
    assert any("a-b" in p for p in problems) and any("regression" in p for p in problems)
    _, said = external.effective(bad)
    assert any("CN_AD_DLB" in line and "training.tasks" in line for line in said)


def test_datasets_in_use(default_config):
    ext = default_config["external"]
    assert list(external.datasets(default_config)) == list(ext["datasets"])
    two = {**default_config, "external": {**ext, "datasets": {**ext["datasets"], "site2": None, "b": {"bids_dir": "x"}}}}
    assert list(external.datasets(two)) == ["b"]  # null leaves config.yaml's dataset out
    assert external.datasets({**default_config, "external": {**ext, "tasks": []}}) == {}


def test_heatmap_units_need_a_common_space_and_the_target_class(default_config):
    cfg = {**default_config, "external": {**default_config["external"], "tasks": ["CN_vs_AD", "sex"],
                                          "variants": ["none", "linear", "syn"]},
           "heatmaps": {**default_config["heatmaps"], "variants": ["linear", "syn"], "target_class": "AD"}}
    model = default_config["training"]["model"]
    assert external.heatmap_units(cfg) == [("CN_vs_AD", "T1w", "linear", model, ["lrpepsilon"]),
                                           ("CN_vs_AD", "T1w", "syn", model, ["lrpepsilon"])]
    assert external.heatmap_units({**cfg, "external": {**cfg["external"], "heatmap_methods": []}}) == []


def test_a_sex_model_is_scored_on_the_sex_column(tmp_path):
    index = pd.DataFrame({"participant_id": ["sub-1", "sub-2", "sub-3"], "diagnosis": ["AD", "CN", "CN"],
                          "sex": ["female", "M", "n/a"]})
    assert list(external.true_classes(index, ["F", "M"])) == ["F", "M", "n/a"]
    assert list(external.true_classes(index, ["CN", "AD"])) == ["AD", "CN", "CN"]


def test_the_section_selects_among_what_the_config_trains(default_config):
    """config.yaml's external dataset must not stop a config that trains other variants, tasks or heatmaps,
    nor run a synthetic cohort beside a user's BIDS dataset: what does not apply is left out, and said."""
    other = {**default_config, "registration": {**default_config["registration"], "variants": ["linear"]},
             "heatmaps": {**default_config["heatmaps"], "methods": ["gradcam"]},
             "external": {**default_config["external"], "variants": ["none", "linear"]}}
    ext, said = external.effective(other)
    assert ext["variants"] == ["linear"] and ext["heatmap_methods"] == [] and list(ext["datasets"]) == ["site2"]
    assert any("external.variants: ['none'] left out" in line for line in said)
    assert any("external.heatmap_methods" in line for line in said)
    assert external.check_settings(other) == []
    none_left = {**other, "training": {**other["training"], "tasks": ["CN_AD_DLB"]}}
    assert external.datasets(none_left) == {}
    assert any("external validation is off" in line for line in external.effective(none_left)[1])
    bids = {**default_config, "dataset": {**default_config["dataset"], "bids_dir": "/data/adni"}}
    assert external.datasets(bids) == {}
    assert any("site2: a synthetic cohort is left out beside a BIDS dataset" in line
               for line in external.effective(bids)[1])
    assert external.module_config(other, "site2")["registration"]["variants"] == ["linear"]


# ---- the transfer experiment's runs (external.transfer_models) --------------------------------------------
LAYOUT = {"rows": 2, "columns": 4, "axis": 2, "slices": {"first": 4, "last": 19}, "interleave": 2}


def test_a_mosaic_run_predicts_the_mean_over_a_scans_mosaics_as_in_training(trained, tmp_path, default_config):
    """A 2D run of the transfer experiment on the external dataset's mosaics: the class probabilities are the
    ensemble of the scan's mosaics (001), exactly as its own test predictions were made in training."""
    from braindl import mosaic

    root, _ = trained
    mosaic.run_mosaics(root / "main.npy", root / "main.tsv", LAYOUT, 1.0, tmp_path / "m.npy", tmp_path / "m.tsv",
                       tmp_path / "m.json")
    cfg = default_config
    s = {k: v for k, v in cfg["training"].items() if k not in ("tasks", "modalities", "finetune_from", "input_pool")}
    s.update(cfg["transfer"]["defaults_2d"], model="resnet18", input="mosaic", rgb=True, head_width=16,
             batch_size=4, max_epochs=2, early_stopping_patience=5)
    out = {k: tmp_path / f"r_{k}.{e}" for k, e in (("model", "pt"), ("history", "tsv"), ("predictions", "tsv"),
                                                   ("summary", "json"))}
    training.train_run(tmp_path / "m.npy", tmp_path / "m.tsv", root / "split.tsv", "CN_vs_AD", s, 1, 1, out,
                       tmp_path / "state", log=lambda m: None)
    table = external.predict_run(out["model"], tmp_path / "m.npy", tmp_path / "m.tsv", tmp_path / "pred.tsv")
    run = pd.read_csv(out["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
    test = run[run.set == "test"].merge(table, on=["participant_id", "session_id"], suffixes=("", "_ext"))
    assert len(test) == (run.set == "test").sum() > 0 and len(table) == 24
    np.testing.assert_allclose(test[["prob_CN", "prob_AD"]].to_numpy(), test[["prob_CN_ext", "prob_AD_ext"]].to_numpy(),
                               rtol=1e-4, atol=1e-5)
    model, _ = training.load_model(out["model"])
    arr = np.load(tmp_path / "m.npy").astype(np.float32)
    with torch.no_grad():
        per = torch.stack([torch.softmax(model(torch.from_numpy(arr[:, v:v + 1])), 1) for v in range(2)])
    np.testing.assert_allclose(table[["prob_CN", "prob_AD"]].to_numpy(), per.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(per[0].numpy(), per[1].numpy(), atol=1e-5)  # the two mosaics do differ
    # volumes are refused for a run on mosaics, naming the file
    with pytest.raises(ValueError, match="main.npy: mosaics of shape"):
        external.predict_run(out["model"], root / "main.npy", root / "main.tsv", tmp_path / "bad.tsv")
    # its internal side in the summary: the run's own test predictions, scored as the external side
    runs = [dict(model="r18", variant="syn", split="01", run="01", predictions=tmp_path / "pred.tsv",
                 internal=out["predictions"])]
    summary = external.summary_table(runs, None, 20, 0.95).set_index(["source", "metric"])
    own = run[run.set == "test"]
    assert summary.loc[("internal", "roc_auc"), "mean"] == pytest.approx(roc_auc_score(own.truth == "AD", own.prob_AD))
    scored = table[table.scored]
    assert summary.loc[("external", "roc_auc"), "mean"] == pytest.approx(
        roc_auc_score(scored.truth == "AD", scored.prob_AD))
    assert set(summary["model"]) == {"r18"}


def test_transfer_models_are_selected_with_their_modality_and_variant(default_config):
    xf = {**default_config["transfer"], "tasks": ["CN_vs_AD"], "modality": "pet", "variant": "syn"}
    cfg = {**default_config, "transfer": xf,
           "external": {**default_config["external"], "transfer_models": ["resnet18", "vit"], "variants": ["none", "linear"],
                        "heatmap_methods": ["lrp_epsilon", "gradient_x_input"]},
           "heatmaps": {**default_config["heatmaps"], "transfer_models": ["resnet18"], "variants": ["linear", "syn"],
                        "methods": ["lrp_epsilon", "gradient_x_input"]}}
    ext, said = external.effective(cfg)
    assert ext["transfer_models"] == ["resnet18"] and ext["transfer_tasks"] == ["CN_vs_AD"]
    assert any("['vit'] left out" in line for line in said)
    assert external.table_units(cfg) == [("CN_vs_AD", "T1w"), ("CN_vs_AD", "pet")]
    # the dataset is preprocessed in what the selected runs read: T1w in none and linear, PET in SyN
    mod = external.module_config(cfg, "site2")
    assert mod["registration"]["variants"] == ["none", "linear", "syn"] and "pet" in mod["dataset"]["modalities"]
    # LRP does not apply to the 2D ResNet: its unit keeps gradient x input only
    units = external.heatmap_units(cfg)
    assert ("CN_vs_AD", "pet", "syn", "resnet18", ["gradientxinput"]) in units
    assert ("CN_vs_AD", "T1w", "linear", default_config["training"]["model"], ["lrpepsilon", "gradientxinput"]) in units
    # only transfer runs selected (the variant comparison trains none of external.modalities): still on
    only = {**cfg, "external": {**cfg["external"], "modalities": ["pet"]}}
    ext, _ = external.effective(only)
    assert ext["tasks"] == [] and list(ext["datasets"]) == ["site2"]
    assert external.table_units(only) == [("CN_vs_AD", "pet")]
    runs = external.transfer_runs("results", "site2", "CN_vs_AD", only["transfer"], ext["transfer_models"], ["01"],
                                  ["01"], lambda *a: "/".join(a))
    assert runs == [dict(model="resnet18", variant="syn", split="01", run="01", internal="CN_vs_AD/resnet18/01/01",
                         predictions="results/external/site2/predictions/task-CN_vs_AD/"
                                     "task-CN_vs_AD_pet_desc-syn_model-resnet18_split-01_run-01_predictions.tsv")]
    off = {**cfg, "transfer": {**xf, "tasks": ["CN_AD_DLB"]}}
    assert external.effective(off)[0]["transfer_models"] == []
