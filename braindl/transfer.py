"""000's experiment: custom 3D CNN against 2D (transfer) models, per task (PROTOCOLS.md sections 5, 6).

Each model ("arm") is trained by :func:`braindl.training.train_run` on the
same splits; this module turns their runs into

* a comparison table per (task, model): validation and test accuracy (the
  mean over runs of each run's metric) with 95 % bootstrap intervals over
  participants, one draw applied to every run (repeated-holdout test sets
  overlap: pooling the runs' scans would count a participant once per run),
  balanced accuracy, NMI and macro ROC AUC of the test set, training time,
  epochs and trainable parameters;
* macro-average ROC curves per model (mean over runs, shaded standard error);
* a bar figure per task of 003's metrics (accuracy, precision, recall =
  sensitivity, F1, G-mean; macro over classes beyond two) per model, mean and
  standard error over runs;
* an embedding figure: t-SNE (scikit-learn, as in 001) of the penultimate
  features (the input of the last linear layer) of one trained run, over the
  task's scans and the out-of-distribution groups (FTLD), which are embedded
  together with them and drawn apart, coloured by true class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from braindl import splits
from braindl.evaluation import classification_metrics, prediction_arrays, regression_metrics, runs_bootstrap_ci
from braindl.io import write_tsv


def _accuracy_metrics(truth, proba) -> dict:
    pred = np.asarray(proba).argmax(1)
    return dict(accuracy=float(skm.accuracy_score(truth, pred)),
                balanced_accuracy=float(skm.balanced_accuracy_score(truth, pred)),
                nmi=float(skm.normalized_mutual_info_score(truth, pred)))


def comparison_table(runs: list[dict], n_boot: int, ci: float) -> pd.DataFrame:
    """One row per (task, model); ``runs``: dicts with task, arm (the model's name), split, run,
    predictions and summary (paths)."""
    rows = []
    frame = pd.DataFrame(runs)
    for (task, model), grp in frame.groupby(["task", "arm"], sort=False):
        summaries = [json.loads(Path(p).read_text()) for p in grp["summary"]]
        preds = [pd.read_csv(p, sep="\t", dtype={"participant_id": str, "session_id": str})
                 for p in grp["predictions"]]
        classes = summaries[0]["classes"]
        row = dict(task=task, model=model, architecture=summaries[0]["model"], input=summaries[0].get("input"),
                   weights=summaries[0].get("weights") or summaries[0].get("pretrained") or "none",
                   freeze=summaries[0].get("freeze", "none"), n_runs=len(grp),
                   trainable_parameters=summaries[0]["trainable_parameters"],
                   train_seconds=float(np.mean([s["seconds"] for s in summaries])),
                   epochs=float(np.mean([s["epochs"] for s in summaries])))
        for which in ("validation", "test"):
            # per run (repeated-holdout test sets overlap: pooling would count a participant once per run),
            # averaged over runs; the interval resamples participants across the runs
            parts = [p[p["set"] == which] for p in preds]
            runs = [prediction_arrays(part, classes) for part in parts]
            groups = [part["participant_id"].to_numpy() for part in parts]
            if classes:
                def fn(truth, proba, test=which == "test"):
                    out = _accuracy_metrics(truth, proba)
                    if test:  # 003's precision, recall, F1, G-mean; ROC AUC
                        full = classification_metrics(truth, proba)
                        out.update({k: full[k] for k in ("precision", "sensitivity", "specificity", "f1",
                                                         "g_mean", "roc_auc")})
                    return out
            else:
                fn = regression_metrics
            per_run = pd.DataFrame([fn(*arrays) for arrays in runs])
            for k in per_run.columns:
                row[f"{which}_{k}"] = float(per_run[k].mean())
            if n_boot:
                ci_fn = fn if which == "test" or not classes else _accuracy_metrics
                for k, (lo, hi) in runs_bootstrap_ci(ci_fn, runs, n_boot, ci, seed=sum(len(p) for p in parts),
                                                     groups=groups).items():
                    row[f"{which}_{k}_lo"], row[f"{which}_{k}_hi"] = lo, hi
            row[f"n_{which}"] = int(np.mean([len(p) for p in parts]))
            row[f"n_{which}_participants"] = len(set().union(*[set(g) for g in groups]))
        rows.append(row)
    return pd.DataFrame(rows)


def run_comparison(runs: list[dict], n_boot: int, ci: float, out_tsv) -> None:
    write_tsv(out_tsv, comparison_table(runs, n_boot, ci))


def roc_figure(predictions: dict, out, style: dict) -> pd.DataFrame:
    """Mean macro-average ROC curve per model: ``predictions`` {model: [predictions TSV, ...]}; returns the
    curves drawn (:func:`braindl.figures.figure_roc_groups`)."""
    from braindl.figures import figure_roc_groups

    first = pd.read_csv(next(iter(predictions.values()))[0], sep="\t")
    classes = [c[5:] for c in first.columns if c.startswith("prob_")]
    return figure_roc_groups(predictions, classes, out, int(style.get("dpi", 150)), legend_title="model")


def metrics_figure(runs: list[dict], out, style: dict) -> pd.DataFrame:
    """003's figure: test accuracy, precision, recall, F1 and G-mean per model (mean +- SE over runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from braindl.evaluation import run_metrics
    from braindl.figures import save_figure, standard_error

    names = ["accuracy", "precision", "sensitivity", "f1", "g_mean"]
    per_model: dict[str, list] = {}
    for r in runs:
        classes = json.loads(Path(r["summary"]).read_text())["classes"]
        pred = pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
        m = run_metrics(pred, classes, 0, 0.95)
        test = pred[pred["set"] == "test"]
        m["accuracy"] = float((test["truth"] == test["predicted"]).mean())
        per_model.setdefault(r["arm"], []).append([m[k] for k in names])
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(names), 3.4))
    width = 0.8 / len(per_model)
    x = np.arange(len(names))
    for i, (model, vals) in enumerate(per_model.items()):
        v = np.asarray(vals, float)
        ax.bar(x + (i - (len(per_model) - 1) / 2) * width, np.nanmean(v, 0), width,
               yerr=np.nan_to_num(standard_error(v)), capsize=3, label=f"{model} (n={len(v)})")
    ax.set_xticks(x, ["accuracy", "precision", "recall", "F1", "G-mean"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test, mean over splits and runs (± SE)")
    ax.legend(title="model", fontsize=8)
    return save_figure(fig, out, int(style.get("dpi", 150)))


# ---- embeddings -------------------------------------------------------------------------------
def penultimate_features(model, x: "torch.Tensor", mosaic: bool, batch_size: int = 8) -> np.ndarray:
    """Input of the model's last linear layer for each sample of ``x`` (mosaics: mean over a scan's mosaics)."""
    import torch

    with torch.no_grad():
        return _penultimate(model, x, mosaic, batch_size)


def _penultimate(model, x, mosaic: bool, batch_size: int) -> np.ndarray:
    import torch

    last = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1]
    grabbed = []
    hook = last.register_forward_hook(lambda mod, inp, out: grabbed.append(inp[0].detach().float()))
    model.eval()
    try:
        views = [x[:, s:s + 1] for s in range(x.shape[1])] if mosaic else [x]
        feats = []
        for v in views:
            grabbed.clear()
            for start in range(0, v.shape[0], batch_size):
                model(v[start:start + batch_size].float())
            feats.append(torch.cat(grabbed))
    finally:
        hook.remove()
    return torch.stack(feats).mean(0).numpy()


def embed(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2D t-SNE of ``features`` (standardised; perplexity adapted to small cohorts)."""
    from sklearn.manifold import TSNE

    f = (features - features.mean(0)) / (features.std(0) + 1e-8)
    perplexity = float(min(30.0, max(2.0, (len(f) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(f)


def run_embedding(model_pt, data_npy, index_tsv, split_tsv, task: str, out_of_distribution: list,
                  out_tsv, out_png, style: dict, seed: int = 0) -> None:
    """Embed the scans of ``task``'s split and the out-of-distribution groups with one trained model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import torch

    from braindl.figures import save_figure
    from braindl.pack import load_pack
    from braindl.training import load_model

    model, ck = load_model(model_pt)
    mosaic = ck.get("input", "volume") == "mosaic"
    arr, index = load_pack(data_npy, index_tsv)
    split = splits.read_split(split_tsv)
    classes = splits.task_classes(task)
    ok = index["qc_pass"].astype(str).str.lower().isin(["true", "1"])
    rows = index[ok].merge(split[["participant_id", "session_id", "set"]], on=["participant_id", "session_id"],
                           how="left")
    rows = rows[rows["set"].notna() | rows["diagnosis"].isin(out_of_distribution)]
    rows = rows[rows["diagnosis"].isin(list(classes) + list(out_of_distribution))].reset_index(drop=True)
    rows["set"] = rows["set"].fillna("out_of_distribution")
    if len(rows) < 5:
        raise ValueError(f"{split_tsv}: only {len(rows)} scans to embed")
    x = torch.from_numpy(np.ascontiguousarray(arr[rows["index"].to_numpy()], dtype=np.float32))
    feats = penultimate_features(model, x if mosaic else x.unsqueeze(1), mosaic)
    xy = embed(feats, seed)
    table = rows[["participant_id", "session_id", "diagnosis", "set"]].assign(tsne_1=xy[:, 0], tsne_2=xy[:, 1])
    write_tsv(out_tsv, table)
    fig, ax = plt.subplots(figsize=(4.6, 4))
    for c in classes:
        t = table[(table.diagnosis == c) & (table.set != "out_of_distribution")]
        ax.scatter(t.tsne_1, t.tsne_2, s=14, label=c, alpha=0.8)
    ood = table[table.set == "out_of_distribution"]
    if len(ood):
        ax.scatter(ood.tsne_1, ood.tsne_2, s=22, marker="x", color="k",
                   label=" / ".join(sorted(ood.diagnosis.unique())) + " (out of distribution)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.set_title(f"{ck['model_name']}: penultimate features, {task}", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, out_png, int(style.get("dpi", 150)))
