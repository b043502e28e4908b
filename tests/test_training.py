"""Models, packing, the device data path and training runs (on a small synthetic pack)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from braindl import derivatives, models, pack, splits, training
from braindl.io import write_tsv

SHAPE = (36, 40, 36)


def _settings(default_config, **over):
    s = {k: v for k, v in default_config["training"].items() if k not in ("tasks", "modalities", "finetune_from")}
    # the toy volumes are too small to pool before the thesis network's 2/3/2/3 pooling
    s.update(batch_size=4, max_epochs=4, early_stopping_patience=10, learning_rate=1e-3, input_pool=1)
    s.update(over)
    return s


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A pack of 28 participants (CN and AD, 1-2 sessions) where AD has a bright block, plus splits."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    rows, vols = [], []
    for i in range(28):
        dx = ["CN", "AD"][i % 2]
        for s in range(1 + i % 2):
            v = rng.normal(0.3, 0.1, SHAPE).astype(np.float32)
            if dx == "AD":
                v[10:20, 12:22, 10:20] += 0.8
            vols.append(v)
            rows.append(dict(index=len(rows), participant_id=f"sub-{i:03d}", session_id=f"{s + 1:02d}",
                             diagnosis=dx, age=70 + i % 10, sex="MF"[i // 2 % 2], mmse=29 - 8 * (dx == "AD") - s,
                             qc_pass=True, qc_reasons="", modality="T1w"))
    index = pd.DataFrame(rows)
    np.save(root / "pack.npy", np.stack(vols).astype(np.float16))
    write_tsv(root / "index.tsv", index.drop(columns="modality"))
    settings = dict(method="repeated_holdout", n_splits=2, test_fraction=0.2, validation_fraction=0.25,
                    age_bin_years=5, balance_sex=False, seed=0)
    for task in ("CN_vs_AD", "MMSE"):
        subjects = splits.subject_table(index, task, 5)
        write_tsv(root / f"{task}_split.tsv", splits.session_rows(subjects, splits.make_splits(subjects, settings)[0]))
    return root


def _out(path, name):
    return {k: path / f"{name}_{k}.{e}" for k, e in
            (("model", "pt"), ("history", "tsv"), ("predictions", "tsv"), ("summary", "json"))}


def _train(toy, tmp_path, settings, name="run", task="CN_vs_AD", **kw):
    out = _out(tmp_path, name)
    summary = training.train_run(toy / "pack.npy", toy / "index.tsv", toy / f"{task}_split.tsv", task, settings,
                                 1, 1, out, tmp_path / f"{name}_state", log=lambda line: None, **kw)
    return summary, out


# ---- models --------------------------------------------------------------------------

@pytest.mark.parametrize("name", models.MODELS)
def test_models_give_logits_for_the_papers_shapes(name):
    # the PIF models' 6 x 6 x 6 feature maps: patches of 3 (2 x 3 x 2 patches would be 3 x 2 x 3: refused)
    model = models.build_model(name, SHAPE, 3, **({"pif_grid": [2, 2, 2]} if name.startswith("pif") else {})).eval()
    assert model(torch.zeros(2, 1, *SHAPE)).shape == (2, 3)
    # the thesis network's flattened size for the 96x114x96 box: 64 x 2 x 3 x 2
    if name == "cnn3d_thesis":
        assert models.build_model(name, (96, 114, 96), 2).head[1].in_features == 64 * 2 * 3 * 2


def test_input_pool_is_the_network_on_the_pooled_volume(tmp_path):
    torch.manual_seed(0)
    pooled = models.build_model("cnn3d_thesis", (96, 114, 96), 2, input_pool=2).eval()
    plain = models.build_model("cnn3d_thesis", (48, 57, 48), 2).eval()
    # the pooling owns no weights: one state dict fits both, and the flattened size is 48x57x48's
    plain.load_state_dict(pooled.state_dict())
    assert pooled.head[1].in_features == 64 * 1 * 1 * 1
    x = torch.rand(2, 1, 96, 114, 96)
    want = plain(torch.nn.functional.avg_pool3d(x, 2))
    torch.testing.assert_close(pooled(x), want, rtol=1e-5, atol=1e-6)
    # a checkpoint written by a run keeps the pooling (model_arch) and rebuilds the same network
    arch = training.model_arch({"model": "cnn3d_thesis", "input_pool": 2})
    assert arch == {"input_pool": 2} and training.model_arch({"model": "cnn3d_thesis", "input_pool": 1}) == {}
    torch.save({"model": pooled.state_dict(), "model_name": "cnn3d_thesis", "input_shape": [96, 114, 96],
                "n_outputs": 2, "dropout": 0.4, "arch": arch}, tmp_path / "m.pt")
    back, _ = training.load_model(tmp_path / "m.pt")
    torch.testing.assert_close(back(x), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"a \(36, 40, 36\) volume is too small for input_pool 2"):
        models.build_model("cnn3d_thesis", SHAPE, 2, input_pool=2)
    with pytest.raises(ValueError, match="resnet18 is a 2D backbone"):
        models.build_model("resnet18", (64, 64), 2, input_pool=2)


def test_freezing_regimes_count_trainable_parameters():
    model = models.build_model("cnn3d_thesis", SHAPE, 2)
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.head.parameters())
    assert models.freeze(model, "none") == total
    assert models.freeze(model, "head_only") == head
    layers = models.parameter_layers(model)
    frozen = layers[: int(0.6 * len(layers))]
    assert models.freeze(model, "first_60_percent") == total - sum(p.numel() for m in frozen for p in m.parameters())
    assert all(not p.requires_grad for p in frozen[0].parameters())


def test_pretrained_checkpoint_loads_and_head_is_replaced(tmp_path):
    src = models.build_model("cnn3d_thesis", SHAPE, 2)
    torch.save({"model": src.state_dict()}, tmp_path / "pre.pt")
    dst = models.build_model("cnn3d_thesis", SHAPE, 4)
    fresh = models.load_pretrained(dst, tmp_path / "pre.pt")
    assert fresh == ["head.4.weight", "head.4.bias"]
    assert torch.equal(dst.features[0].conv.weight, src.features[0].conv.weight)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        models.load_pretrained(dst, tmp_path / "missing.pt")
    torch.save({"model": models.build_model("vgg3d_pet", SHAPE, 2).state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt.*feature layers"):
        models.load_pretrained(dst, tmp_path / "other.pt")


# ---- packing and the device data path -------------------------------------------------

def test_pack_stacks_volumes_and_refuses_another_grid(tmp_path):
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    paths = []
    for i in range(3):
        p = tmp_path / f"v{i}.nii.gz"
        nib.save(nib.Nifti1Image(np.full((4, 5, 6), i, np.float32), aff), str(p))
        paths.append(p)
    shape, _ = pack.pack_volumes(paths, tmp_path / "p.npy", "float32")
    arr = np.load(tmp_path / "p.npy")
    assert shape == (3, 4, 5, 6) and [float(a.mean()) for a in arr] == [0, 1, 2]
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 7), np.float32), aff), str(tmp_path / "odd.nii.gz"))
    with pytest.raises(ValueError, match="odd.nii.gz"):
        pack.pack_volumes(paths + [tmp_path / "odd.nii.gz"], tmp_path / "q.npy")
    assert not (tmp_path / "q.npy").exists()


def test_augment_flips_and_shifts_with_zero_fill():
    x = torch.arange(2 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 1, 4, 5, 6) + 1
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(training.augment(x, 1.0, 0, gen), x.flip(2))
    y = training.augment(x, 0.0, 2, gen)
    assert y.shape == x.shape
    for i in range(2):
        diff = (y[i] != x[i])
        if diff.any():  # shifted: some border slab is zero, the rest is x rolled
            assert (y[i] == 0).any()
    assert torch.equal(training.augment(x, 0.0, 0, gen), x)


def _shifted(v, s, d):
    out = torch.roll(v, s, d)
    sl = [slice(None)] * v.ndim
    sl[d] = slice(0, s) if s > 0 else slice(s, None)
    out[tuple(sl)] = 0
    return out


def _shift_axes(x, y):
    """The array axis (1 = sagittal) each sample was shifted along (None: not shifted)."""
    out = []
    for i in range(len(x)):
        hits = [d for d in (1, 2, 3) for s in (-2, -1, 1, 2) if torch.equal(y[i], _shifted(x[i], s, d))]
        out.append(hits[0] if hits else None)
    return out


def test_augment_can_shift_along_the_sagittal_axis_only():
    """004: "translation and flipping along the sagittal axis": every shift moves array axis 0."""
    x = torch.rand(64, 1, 6, 7, 8) + 1
    y = training.augment(x, 0.0, 2, torch.Generator().manual_seed(3), shift_axis="sagittal")
    axes = _shift_axes(x, y)
    assert set(axes) == {1, None} and axes.count(1) > 30
    # a random axis: all three
    y = training.augment(x, 0.0, 2, torch.Generator().manual_seed(3))
    assert set(_shift_axes(x, y)) == {1, 2, 3, None}


def test_class_weights_match_scikit_learn():
    y = np.array([0, 0, 0, 1, 2, 2])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert np.allclose(training.class_weights(y, 3).numpy(), expected)


# ---- training runs ----------------------------------------------------------------------

def test_training_learns_and_writes_its_outputs(toy, tmp_path, default_config):
    summary, out = _train(toy, tmp_path, _settings(default_config, max_epochs=6))
    hist = pd.read_csv(out["history"], sep="\t")
    assert len(hist) == summary["epochs"] == 6
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
    pred = pd.read_csv(out["predictions"], sep="\t")
    test = pred[pred.set == "test"]
    assert (test["truth"] == test["predicted"]).mean() >= 0.8
    assert np.allclose(test[["prob_CN", "prob_AD"]].sum(1), 1, atol=1e-5)
    assert json.loads(out["summary"].read_text())["best_epoch"] == summary["best_epoch"]
    model, ck = training.load_model(out["model"])
    assert ck["classes"] == ["CN", "AD"]
    assert not (tmp_path / "run_state").exists()  # the resume state is removed once the outputs exist


def test_same_seed_same_metrics_on_cpu(toy, tmp_path, default_config):
    s = _settings(default_config, max_epochs=2)
    _, a = _train(toy, tmp_path, s, "a")
    _, b = _train(toy, tmp_path, s, "b")
    ha, hb = (pd.read_csv(x["history"], sep="\t").drop(columns="seconds") for x in (a, b))
    pd.testing.assert_frame_equal(ha, hb)
    _, c = _train(toy, tmp_path, {**s, "seed": 5}, "c")
    assert not pd.read_csv(c["history"], sep="\t").drop(columns="seconds").equals(ha)


def test_killed_run_resumes_from_its_checkpoint(toy, tmp_path, default_config):
    s = _settings(default_config, max_epochs=4)
    _, full = _train(toy, tmp_path, s, "full")

    def kill(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(toy, tmp_path, s, "killed", on_epoch_end=kill, checkpoint_s=0)  # a checkpoint every epoch
    assert (tmp_path / "killed_state" / "last.pt").is_file()
    assert not _out(tmp_path, "killed")["model"].exists()
    lines = []
    out = _out(tmp_path, "killed")
    training.train_run(toy / "pack.npy", toy / "index.tsv", toy / "CN_vs_AD_split.tsv", "CN_vs_AD", s, 1, 1, out,
                       tmp_path / "killed_state", log=lines.append)
    assert "parameters trainable" in lines[0]
    assert "resuming" in lines[1] and "epoch 2" in lines[1]
    assert len(lines) == 2 + 2  # then epochs 3 and 4 only
    a, b = (pd.read_csv(x["history"], sep="\t").drop(columns="seconds") for x in (full, out))
    pd.testing.assert_frame_equal(a, b)


def test_runs_of_one_job_equal_each_run_alone_and_resume_the_finished_ones(toy, tmp_path, default_config):
    """training.train_runs (resources.training_job_runs): two runs (other split and run numbers, one fine-tuned
    from a file) in one process give each run's files as train_run alone does; a job stopped on its second
    run resumes the first from its kept checkpoint instead of training it again."""
    s = _settings(default_config, max_epochs=2)
    pre, _ = _train(toy, tmp_path, s, "pre")
    runs = [[1, 1], [1, 2]]
    alone = []
    for (split, run), name, start in zip(runs, ("a1", "a2"), (None, tmp_path / "pre_model.pt")):
        out = _out(tmp_path, name)
        training.train_run(toy / "pack.npy", toy / "index.tsv", toy / "CN_vs_AD_split.tsv", "CN_vs_AD", s, split,
                           run, out, tmp_path / f"{name}_state", pretrained=start, log=lambda line: None)
        alone.append(out)
    outs = [_out(tmp_path, "j1"), _out(tmp_path, "j2")]
    lists = {k: [o[k] for o in outs] for k in training.RUN_OUTPUTS}
    splits_ = [toy / "CN_vs_AD_split.tsv"] * 2
    states = [tmp_path / "j1_state", tmp_path / "j2_state"]
    # the second run is killed: the first one's outputs are written, its checkpoint kept
    def kill(index, epoch):
        if index == 1 and epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train_runs(toy / "pack.npy", toy / "index.tsv", splits_, "CN_vs_AD", s, runs, lists, states,
                            pretrained=[None, tmp_path / "pre_model.pt"], log=lambda line: None, checkpoint_s=0,
                            on_epoch_end=kill)
    assert (states[0] / "last.pt").is_file() and outs[0]["model"].is_file() and not outs[1]["model"].exists()
    for f in outs[0].values():  # Snakemake removes an incomplete job's outputs
        f.unlink()
    lines = []
    summaries = training.train_runs(toy / "pack.npy", toy / "index.tsv", splits_, "CN_vs_AD", s, runs, lists,
                                    states, pretrained=[None, tmp_path / "pre_model.pt"], log=lines.append)
    assert [line for line in lines if "resuming" in line and "split 1 run 1" in line and "epoch 2" in line]
    assert "CN_vs_AD split 1 run 2 (2 of 2 in this job)" in lines
    assert [(x["split"], x["run"]) for x in summaries] == [(1, 1), (1, 2)] and summaries[1]["pretrained"]
    assert not any(d.exists() for d in states)  # removed once the job's last run is done
    for one, job in zip(alone, outs):
        a, b = (pd.read_csv(x["history"], sep="\t").drop(columns="seconds") for x in (one, job))
        pd.testing.assert_frame_equal(a, b)
        pd.testing.assert_frame_equal(pd.read_csv(one["predictions"], sep="\t"), pd.read_csv(job["predictions"], sep="\t"))
        wa, wb = (torch.load(str(x["model"]), weights_only=True)["model"] for x in (one, job))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the two runs differ (their seeds), and lists that do not match are refused before any training
    assert not pd.read_csv(outs[0]["predictions"], sep="\t").equals(pd.read_csv(outs[1]["predictions"], sep="\t"))
    with pytest.raises(ValueError, match="differ in length"):
        training.train_runs(toy / "pack.npy", toy / "index.tsv", splits_[:1], "CN_vs_AD", s, runs,
                            {k: [o[k] for o in (_out(tmp_path, "x1"), _out(tmp_path, "x2"))] for k in training.RUN_OUTPUTS},
                            [tmp_path / "x1_state", tmp_path / "x2_state"])
    assert not _out(tmp_path, "x1")["model"].exists()
    # a one-run job may name single paths
    # (without state folders: each run's beside its model, as the workflow's train.py leaves it)
    single = _out(tmp_path, "s1")
    training.train_runs(toy / "pack.npy", toy / "index.tsv", toy / "CN_vs_AD_split.tsv", "CN_vs_AD", s, [[1, 1]],
                        single, log=lambda line: None)
    assert not Path(derivatives.run_state_dir(single["model"])).exists()
    pd.testing.assert_frame_equal(pd.read_csv(single["predictions"], sep="\t"),
                                  pd.read_csv(alone[0]["predictions"], sep="\t"))


def test_checkpoints_are_written_by_time_and_at_the_end(toy, tmp_path, default_config, monkeypatch):
    """At most one checkpoint per ``checkpoint_s`` (a DenseNet's state is ~110 MB), plus the last epoch;
    a run killed before its first checkpoint starts over and still ends where an uninterrupted run ends."""
    s = _settings(default_config, max_epochs=4)
    saved = []
    real = training._save_atomic
    def spy(obj, path):
        if "optimizer" in obj:  # a checkpoint, not the final model
            saved.append(obj["epoch"])
        real(obj, path)

    monkeypatch.setattr(training, "_save_atomic", spy)
    _, full = _train(toy, tmp_path, s, "full", checkpoint_s=3600)
    assert saved == [4]  # the end only
    saved.clear()
    _train(toy, tmp_path, s, "every", checkpoint_s=0)
    assert saved == [1, 2, 3, 4]
    saved.clear()

    def kill(epoch):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(toy, tmp_path, s, "killed", on_epoch_end=kill, checkpoint_s=3600)
    assert saved == [] and not (tmp_path / "killed_state" / "last.pt").exists()
    _, out = _train(toy, tmp_path, s, "killed", checkpoint_s=3600)
    a, b = (pd.read_csv(x["history"], sep="\t").drop(columns="seconds") for x in (full, out))
    pd.testing.assert_frame_equal(a, b)


def test_early_stopping_keeps_the_best_epoch(toy, tmp_path, default_config):
    s = _settings(default_config, max_epochs=30, early_stopping_patience=2, monitor="val_loss", learning_rate=3e-3)
    summary, out = _train(toy, tmp_path, s)
    hist = pd.read_csv(out["history"], sep="\t")
    assert summary["epochs"] < 30
    assert summary["best_epoch"] == int(hist.loc[hist["validation_loss"].idxmin(), "epoch"])
    assert summary["epochs"] == summary["best_epoch"] + 2


def test_regression_and_fine_tuning_with_a_frozen_part(toy, tmp_path, default_config):
    s = _settings(default_config, max_epochs=2)
    _, first = _train(toy, tmp_path, s, "cls")
    summary, out = _train(toy, tmp_path, {**s, "freeze": "head_only"}, "mmse", task="MMSE", pretrained=first["model"])
    model = models.build_model(s["model"], SHAPE, 1)
    assert summary["trainable_parameters"] == sum(p.numel() for p in model.head.parameters())
    assert summary["fresh_parameters"] == ["head.4.weight", "head.4.bias"]
    pred = pd.read_csv(out["predictions"], sep="\t")
    assert {"truth", "prediction"} <= set(pred.columns) and pred["prediction"].between(0, 40).all()


def test_leaking_split_is_refused_before_training(toy, tmp_path, default_config):
    table = pd.read_csv(toy / "CN_vs_AD_split.tsv", sep="\t", dtype=str)
    pid = table[table.set == "train"].participant_id.iloc[0]
    bad = pd.concat([table, table[table.participant_id == pid].assign(set="test")])
    write_tsv(toy / "leak_split.tsv", bad)
    with pytest.raises(splits.SplitError, match=pid):
        _train(toy, tmp_path, _settings(default_config), task="leak")


# ---- 2D models on mosaics ------------------------------------------------------------------
LAYOUT3 = {"rows": 3, "columns": 4, "axis": 2, "slices": "all", "interleave": 3}


@pytest.fixture(scope="module")
def toy_mosaics(toy):
    from braindl import mosaic

    mosaic.run_mosaics(toy / "pack.npy", toy / "index.tsv", LAYOUT3, 1.0, toy / "mosaics.npy",
                       toy / "mosaics_index.tsv", toy / "mosaics.json")
    return toy


def _settings_2d(default_config, **over):
    return _settings(default_config, **{"model": "resnet18", "input": "mosaic", "rgb": True, "dropout": 0.5,
                                        **default_config["transfer"]["defaults_2d"], "head_width": 32, **over})


def _train_2d(toy, tmp_path, settings, name="m"):
    out = _out(tmp_path, name)
    lines = []
    summary = training.train_run(toy / "mosaics.npy", toy / "mosaics_index.tsv", toy / "CN_vs_AD_split.tsv",
                                 "CN_vs_AD", settings, 1, 1, out, tmp_path / f"{name}_state", log=lines.append)
    return summary, out, lines


@pytest.mark.slow
def test_2d_model_learns_mosaics_and_predicts_the_ensemble(toy_mosaics, tmp_path, default_config):
    # 10 epochs: with one torch thread the toy task is learnt from epoch 8, with two from epoch 3
    summary, out, lines = _train_2d(toy_mosaics, tmp_path, _settings_2d(default_config, max_epochs=10))
    assert summary["input"] == "mosaic" and summary["model"] == "resnet18"
    assert any("parameters trainable" in line and f"{summary['trainable_parameters']:,}" in line for line in lines)
    pred = pd.read_csv(out["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
    test = pred[pred.set == "test"]
    assert (test["truth"] == test["predicted"]).mean() >= 0.8
    # the test probabilities are the mean over the scan's three interleaved mosaics
    model, ck = training.load_model(out["model"])
    assert ck["arch"]["head"] == "fc256" and ck["input"] == "mosaic"
    arr = np.load(toy_mosaics / "mosaics.npy")
    index = pd.read_csv(toy_mosaics / "mosaics_index.tsv", sep="\t", dtype={"participant_id": str, "session_id": str})
    rows = test.merge(index, on=["participant_id", "session_id"])
    x = torch.from_numpy(arr[rows["index"].to_numpy()].astype(np.float32))
    with torch.no_grad():
        per = torch.stack([torch.softmax(model(x[:, s:s + 1]), 1) for s in range(3)])
    assert np.allclose(per.mean(0).numpy(), rows[["prob_CN", "prob_AD"]].to_numpy(), atol=2e-3)
    assert not np.allclose(per[0].numpy(), per[1].numpy(), atol=1e-4)  # the mosaics do differ


def test_frozen_backbone_with_sigmoid_head_and_pretrained_file(toy_mosaics, tmp_path, default_config):
    from braindl import backbones

    ref = backbones.build_2d("resnet18", 2, head_width=32)
    torch.nn.init.normal_(ref.features[1].conv1.weight)
    ref.features[1].bn1.running_mean.fill_(0.3)
    torch.save(ref.features[1].state_dict(), tmp_path / "resnet18-upstream.pth")
    settings = _settings_2d(default_config, head="sigmoid", weights=str(tmp_path / "resnet18-upstream.pth"),
                            freeze="head_only", max_epochs=2)
    summary, out, lines = _train_2d(toy_mosaics, tmp_path, settings)
    head = sum(p.numel() for p in backbones.build_2d("resnet18", 2, head="sigmoid").head.parameters())
    assert summary["trainable_parameters"] == head and summary["freeze"] == "head_only"
    assert summary["weights"].endswith("resnet18-upstream.pth")
    model, _ = training.load_model(out["model"])
    # frozen backbone: weights and BatchNorm statistics are the pretrained ones
    assert torch.equal(model.features[1].conv1.weight, ref.features[1].conv1.weight)
    assert torch.all(model.features[1].bn1.running_mean == 0.3)
    pred = pd.read_csv(out["predictions"], sep="\t")
    assert np.allclose(pred[["prob_CN", "prob_AD"]].sum(1), 1.0)


def test_weighted_bce_matches_its_definition():
    logits = torch.tensor([[0.2, -1.0], [1.5, 0.3], [-0.4, 0.9]])
    y = torch.tensor([0, 1, 1])
    w = torch.tensor([2.0, 0.5])
    onehot = torch.nn.functional.one_hot(y, 2).float()
    per = -(onehot * torch.log(torch.sigmoid(logits)) + (1 - onehot) * torch.log(1 - torch.sigmoid(logits))).mean(1)
    expected = (w[y] * per).sum() / w[y].sum()
    assert torch.allclose(training.WeightedBCE(2, w)(logits, y), expected)


def test_2d_augmentation_shifts_and_zooms_within_bounds():
    x = torch.zeros(4, 1, 40, 40)
    x[:, :, 18:22, 18:22] = 1
    gen = torch.Generator().manual_seed(0)
    y = training.augment_2d(x, 0.03, 0.03, gen)
    assert y.shape == x.shape
    for i in range(4):
        cy, cx = [float((torch.arange(40.0)[:, None] * y[i, 0]).sum() / y[i, 0].sum()) if d == 0 else
                  float((torch.arange(40.0)[None, :] * y[i, 0]).sum() / y[i, 0].sum()) for d in (0, 1)]
        assert abs(cy - 19.5) <= 0.03 * 40 + 0.5 and abs(cx - 19.5) <= 0.03 * 40 + 0.5
    assert not torch.equal(y, x)
    assert torch.equal(training.augment_2d(x, 0.0, 0.0, gen), x)


def test_augment_can_shift_within_the_axial_plane_only():
    """004 study 2: "randomly translated between -2 and 2 pixels within the axial plane": array axes 0, 1."""
    x = torch.rand(64, 1, 6, 7, 8) + 1
    axes = _shift_axes(x, training.augment(x, 0.0, 2, torch.Generator().manual_seed(3), shift_axis="axial"))
    assert set(axes) == {1, 2, None} and min(axes.count(1), axes.count(2)) > 10


def test_learning_rate_decays_as_keras_time_based_decay(toy, tmp_path, default_config):
    """004 study 2: "0.0005 with a 0.002 decay": update t uses lr0 / (1 + decay * t); a resumed run goes on
    from its update count."""
    lrs = []
    orig = torch.optim.Adam.step

    def spy(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    s = _settings(default_config, max_epochs=2, learning_rate=5e-4, learning_rate_decay=0.25)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.Adam, "step", spy)
        _train(toy, tmp_path, s, "decay")
    assert len(lrs) > 4
    np.testing.assert_allclose(lrs, [5e-4 / (1 + 0.25 * t) for t in range(len(lrs))], rtol=1e-12)

    def kill(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(toy, tmp_path, s, "decay_killed", on_epoch_end=kill, checkpoint_s=0)
    lrs.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.Adam, "step", spy)
        _train(toy, tmp_path, s, "decay_killed")
    n = len(lrs)  # the second epoch's updates only
    np.testing.assert_allclose(lrs, [5e-4 / (1 + 0.25 * t) for t in range(n, 2 * n)], rtol=1e-12)


def test_sex_task_takes_its_classes_from_the_sex_column(toy):
    index = pd.read_csv(toy / "index.tsv", sep="\t", dtype={"participant_id": str, "session_id": str})
    index.loc[index.participant_id == "sub-000", "sex"] = "female"  # another spelling
    index.loc[index.participant_id == "sub-001", "sex"] = "n/a"  # no class: no part in the task
    subjects = splits.subject_table(index, "sex", 5)
    assert "sub-001" not in set(subjects.participant_id)
    sets = splits.make_splits(subjects, dict(method="repeated_holdout", n_splits=1, test_fraction=0.2,
                                             validation_fraction=0.25, age_bin_years=5, balance_sex=False, seed=0))[0]
    rows = training.task_rows(index, splits.session_rows(subjects, sets), "sex")
    assert splits.task_classes("sex") == ["F", "M"]
    every = pd.concat(rows.values())
    assert set(every.diagnosis) == {"CN", "AD"} and "sub-001" not in set(every.participant_id)
    expected = every["sex"].map(splits.sex_code).map({"F": 0, "M": 1})
    assert (every["target"] == expected).all() and set(every["target"]) == {0, 1}


def test_a_run_that_diverges_from_its_first_epoch_says_so(toy, tmp_path, default_config, monkeypatch):
    """A NaN loss from the first epoch: a clear error naming the run and the learning rate, no output."""
    s = _settings(default_config, max_epochs=2, learning_rate=0.5, monitor="val_loss")
    monkeypatch.setattr(training.Runner, "score", lambda self, which: {f"{which}_loss": float("nan"),
                                                                       f"{which}_balanced_accuracy": 0.5})
    with pytest.raises(training.TrainingError, match=r"CN_vs_AD split 1 run 1: no epoch gave a finite "
                                                     r"validation_loss .*lower the learning rate \(0.5\)"):
        _train(toy, tmp_path, s, "nan")
    assert not _out(tmp_path, "nan")["model"].exists()


def test_the_pack_dtype_reaches_the_device():
    """training.pack_dtype float32 trains on float32 volumes; float16 halves the memory."""
    rows = pd.DataFrame({"index": [1, 0]})
    full = np.random.default_rng(0).random((2, 3, 4, 5)).astype(np.float32)
    x32 = training.to_device(full, rows, torch.device("cpu"))
    assert x32.dtype == torch.float32 and x32.shape == (2, 1, 3, 4, 5) and torch.equal(x32[0, 0], torch.from_numpy(full[1]))
    x16 = training.to_device(full.astype(np.float16), rows, torch.device("cpu"))
    assert x16.dtype == torch.float16 and x16.element_size() * 2 == x32.element_size()


def test_a_pif_search_trains_each_sample_as_its_own_run_would(toy, tmp_path, default_config):
    from braindl import pifstudy

    study = {**default_config["pif_study"], "samples": 2, "min_per_architecture": 1, "batch_sizes": [4],
             "max_epochs": 1, "fractions": [1.0]}
    train = {**default_config["training"], "input_pool": 1, "pif_grid": [2, 2, 2]}
    plan = pifstudy.study_plan(study, 1)
    runs = pifstudy.search_runs(train, study, plan, "01", "baseline", "100")
    assert [(r["sample"], r["run"]) for r in runs] == [(0, 1), (1, 2)]
    assert {r["settings"]["model"] for r in runs} == {"vgg3d_a", "vgg3d_b"}  # one draw of each architecture
    paths = pifstudy.search_paths("res", study, "CN_vs_AD", "baseline", "100", "01")
    assert sorted(paths) == sorted(f"{k}_sample-{s}" for s in (0, 1) for k in ("model", "history", "predictions",
                                                                                  "summary"))
    outputs = {k: str(tmp_path / v.split("/")[-1]) for k, v in paths.items()}
    summaries = pifstudy.run_search(toy / "pack.npy", toy / "index.tsv", toy / "CN_vs_AD_split.tsv", "CN_vs_AD", 1,
                                    runs, outputs)
    assert [s["epochs"] for s in summaries] == [1, 1]
    for r in runs:
        assert json.loads(open(outputs[f"summary_sample-{r['sample']}"]).read())["model"] == r["settings"]["model"]
    # a sample is the run a job of its own would train: its settings and seed, the same history
    for r in [r for r in runs if r["settings"]["model"] == "vgg3d_a"]:
        alone = _out(tmp_path, f"alone{r['sample']}")
        training.train_run(toy / "pack.npy", toy / "index.tsv", toy / "CN_vs_AD_split.tsv", "CN_vs_AD", r["settings"],
                           1, r["run"], alone, tmp_path / "alone_state", log=lambda line: None)
        a, b = (pd.read_csv(f, sep="\t").drop(columns="seconds")
                for f in (outputs[f"history_sample-{r['sample']}"], alone["history"]))
        pd.testing.assert_frame_equal(a, b)
    # the searches of two splits in one job (resources.training_job_runs: unit) are those searches alone
    assert pifstudy.job_splits("unit", ["01", "02"]) == ["01", "02"]
    assert pifstudy.job_splits("split", ["01", "02"], "02") == pifstudy.job_splits("run", ["01", "02"], "02") == ["02"]
    assert pifstudy.job_splits("split", ["01", "02"]) == ["{split}"]
    both = pifstudy.job_paths("res", study, "CN_vs_AD", "baseline", "100", ["01", "02"])
    assert sorted(both) == sorted(f"{k}_split-{s}" for s in ("01", "02") for k in paths)
    joint = {k: str(tmp_path / "joint" / v.split("/")[-1]) for k, v in both.items()}
    runs2 = {"01": runs, "02": pifstudy.search_runs(train, study, pifstudy.study_plan(study, 2), "02", "baseline", "100")}
    tables = {s: toy / "CN_vs_AD_split.tsv" for s in runs2}
    with pytest.raises(ValueError, match="split tables of splits"):
        pifstudy.run_searches(toy / "pack.npy", toy / "index.tsv", {"01": tables["01"]}, "CN_vs_AD", runs2, joint)
    with pytest.raises(ValueError, match="lacks outputs"):
        pifstudy.run_searches(toy / "pack.npy", toy / "index.tsv", tables, "CN_vs_AD", runs2,
                              {k: v for k, v in joint.items() if not k.endswith("_split-02")})
    assert not (tmp_path / "joint").exists()  # refused before any training
    (tmp_path / "joint").mkdir()
    pifstudy.run_searches(toy / "pack.npy", toy / "index.tsv", tables, "CN_vs_AD", runs2, joint)
    for r in runs:  # split 01's search: the same histories as the search alone above
        a, b = (pd.read_csv(f, sep="\t").drop(columns="seconds")
                for f in (outputs[f"history_sample-{r['sample']}"], joint[f"history_sample-{r['sample']}_split-01"]))
        pd.testing.assert_frame_equal(a, b)
    assert all(json.loads(Path(joint[f"summary_sample-{r['sample']}_split-02"]).read_text())["model"]
               == r["settings"]["model"] for r in runs2["02"])
    # the runs' checkpoints were kept until the job's end, and are gone after it
    assert not [p for p in (tmp_path / "joint").iterdir() if p.is_dir()]
