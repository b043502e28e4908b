"""External validation: the trained runs applied to other datasets, with the same preprocessing.

A study of this field reports a second, independent test set beside its internal
splits: 001 "tested on an independent SPECT set"; ADNI-trained models are commonly
tested on AIBL or OASIS. Each dataset of ``external.datasets`` (a BIDS directory, or a
second synthetic cohort with another seed and therefore other sites) goes through the
workflow's own preprocessing rules, run as a Snakemake module with the main config and
``results_dir`` moved to ``results/external/<name>`` (:func:`module_config`): the same
registration variants, crop and per-scan normalisation, nothing fitted on the external
scans, and nothing of the main dataset reruns when an external dataset is added or
changed. Every selected run then predicts every external scan (:func:`predict_run`);
scans whose diagnosis is not one of the model's classes are predicted and listed, not
scored; a dataset without labels gets predictions only.

Metrics are those of the internal evaluation (:func:`braindl.evaluation.classification_metrics`)
with participant-level bootstrap intervals, per run and per variant over runs
(:func:`braindl.evaluation.runs_bootstrap_ci`), beside the internal test sets' metrics.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd

from braindl.io import write_tsv

NAME = re.compile(r"^[A-Za-z0-9]+$")
#: what a dataset of ``external.datasets`` may set
DATASET_KEYS = ("bids_dir", "labelled", "synthetic", "filters", "participants", "diagnoses")
SCORED = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity")
UNSCORED = "n/a"


def effective(config: dict) -> tuple[dict, list[str]]:
    """The ``external`` section as it applies to the rest of ``config``, and what was left out, in words.

    ``tasks``, ``modalities``, ``variants`` and ``heatmap_methods`` select among the runs the config
    trains and the heatmaps it makes: what it does not have is left out (config.yaml's external dataset
    must not stop a config that trains other tasks or variants), and nothing left switches external
    validation off. A dataset set to null is left out (a named config cannot remove config.yaml's keys of
    a dict, it can set one to null); a synthetic dataset (``bids_dir`` null) only beside the synthetic
    cohort, not beside a user's BIDS dataset."""
    from braindl.architectures import heatmap_refusal, method_specs

    ext = copy.deepcopy(config["external"])
    said = []
    for key, known, where in (("tasks", config["training"]["tasks"], "training.tasks"),
                              ("modalities", config["training"]["modalities"], "training.modalities"),
                              ("variants", config["registration"]["variants"], "registration.variants")):
        dropped = [v for v in ext[key] if v not in known]
        if dropped and ext["tasks"]:
            said.append(f"external.{key}: {dropped} left out (not in {where})")
        ext[key] = [v for v in ext[key] if v in known]
    hm = config["heatmaps"]
    applies = [m for m in ext["heatmap_methods"] if m in hm["methods"]
               and not heatmap_refusal(config["training"]["model"], m)]
    if len(applies) < len(ext["heatmap_methods"]) and ext["tasks"]:
        said.append(f"external.heatmap_methods: {sorted(set(ext['heatmap_methods']) - set(applies))} left out (not "
                    f"among the heatmaps.methods that apply to {config['training']['model']})")
    ext["heatmap_methods"] = applies
    ext["heatmap_labels"] = list(method_specs(applies, hm))
    kept = {}
    for name, spec in ext["datasets"].items():
        if spec is None:
            continue
        if spec.get("bids_dir") is None and config["dataset"]["bids_dir"] is not None:
            said.append(f"external.datasets.{name}: a synthetic cohort is left out beside a BIDS dataset "
                        f"(set it to null, or give its bids_dir)")
            continue
        kept[name] = spec
    if not (ext["tasks"] and ext["modalities"] and ext["variants"]):
        if kept and config["external"]["tasks"]:
            said.append("external validation is off: no selected run is trained by this config")
        kept = {}
    ext["datasets"] = kept
    return ext, said


def datasets(config: dict) -> dict:
    """The external datasets in use (:func:`effective`)."""
    return effective(config)[0]["datasets"]


def check_settings(config: dict) -> list[str]:
    """Problems of the ``external`` section (empty: none); only what it selects is checked."""
    ext = effective(config)[0]
    problems = []
    for name in ext["datasets"]:
        if not NAME.match(str(name)):
            problems.append(f"external.datasets: name {name!r} must be letters and digits (it names a folder)")
    if ext["datasets"] and "MMSE" in ext["tasks"]:
        problems.append("external.tasks: MMSE is a regression; external validation scores classification tasks")
    return problems


def module_variants(selected, variants) -> list[str]:
    """The registration variants an external dataset is preprocessed in: the selected ones, and
    ``linear`` where ``syn`` is selected (SyN starts from the linear registration)."""
    need = set(selected) | ({"linear"} if "syn" in selected else set())
    return [v for v in variants if v in need]


def module_config(config: dict, name: str) -> dict:
    """The config of dataset ``name``'s preprocessing module: the main config with its results under
    ``results/external/<name>``, its dataset (a BIDS directory, or the synthetic cohort with the
    dataset's overrides), the selected modalities and variants, and every experiment switched off
    (only its packed scans are asked of it)."""
    ext = effective(config)[0]
    spec = ext["datasets"][name]
    cfg = copy.deepcopy(config)
    cfg["results_dir"] = f"{config['results_dir']}/external/{name}"
    ds = cfg["dataset"]
    ds["bids_dir"] = spec.get("bids_dir")
    ds["labelled"] = bool(spec.get("labelled", True))
    for key in ("filters", "participants", "diagnoses"):
        if key in spec:
            ds[key] = copy.deepcopy(spec[key])
    ds["modalities"] = [m for m in config["dataset"]["modalities"] if m in ext["modalities"]
                        or (m == "T1w" and config["registration"]["pet_route"] == "via_t1")]
    if spec.get("synthetic"):
        _merge(cfg["synthetic"], spec["synthetic"])
    cfg["registration"]["variants"] = module_variants(ext["variants"], config["registration"]["variants"])
    cfg["training"]["modalities"] = [m for m in config["training"]["modalities"] if m in ds["modalities"]]
    cfg["transfer"]["tasks"] = []
    cfg["pretraining"]["model"] = None
    cfg["heatmaps"]["tasks"] = []
    cfg["dose"]["training"]["models"] = []
    cfg["pif_study"]["tasks"] = []
    cfg["ms_study"]["enabled"] = False
    cfg["external"]["datasets"] = {}
    return cfg


def _merge(base: dict, over: dict) -> None:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


# ---- predictions ---------------------------------------------------------------------------------
def true_classes(index: pd.DataFrame, classes) -> pd.Series:
    """Each scan's class for a model of ``classes``: its diagnosis, or for a task whose classes are another
    column (:data:`braindl.splits.LABELLED`, e.g. sex) that column; ``n/a`` where it has none."""
    from braindl import splits

    for task, (_, labels) in splits.LABELLED.items():
        if list(classes) == list(labels):
            return splits.task_labels(index, task).fillna(UNSCORED).astype(str)
    return index["diagnosis"].astype(str)

def predict_run(model_pt, pack_npy, index_tsv, out_tsv, labelled: bool = True, batch_size: int = 8,
                threads: int | None = None) -> pd.DataFrame:
    """Class probabilities of one saved run for every scan of an external pack, in the layout of the
    training predictions (``set`` is ``external``): ``truth`` is the diagnosis where it is one of the
    model's classes (``n/a`` otherwise, or for an unlabelled dataset), ``scored`` says which rows the
    metrics use; the QC decision of each scan is kept (``qc_pass``)."""
    import torch

    from braindl.pack import load_pack
    from braindl.training import load_model, probabilities

    if threads:
        torch.set_num_threads(int(threads))
    model, ck = load_model(model_pt)
    if ck.get("input", "volume") != "volume":
        raise ValueError(f"{model_pt}: external validation applies 3D runs; this model reads {ck['input']}s")
    classes = list(ck["classes"])
    if not classes:
        raise ValueError(f"{model_pt}: a regression run has no classes to score on an external dataset")
    arr, index = load_pack(pack_npy, index_tsv)
    if tuple(arr.shape[1:]) != tuple(ck["input_shape"]):
        raise ValueError(f"{pack_npy}: volumes of shape {tuple(arr.shape[1:])}, the model was trained on "
                         f"{tuple(ck['input_shape'])}: crop the external scans as the training scans")
    probs = []
    with torch.no_grad():
        for start in range(0, len(index), int(batch_size)):
            x = torch.from_numpy(np.asarray(arr[start:start + int(batch_size)], dtype=np.float32)).unsqueeze(1)
            probs.append(probabilities(model(x).float(), model.output).numpy())
    p = np.concatenate(probs) if probs else np.zeros((0, len(classes)))
    dx = true_classes(index, classes) if labelled else pd.Series(UNSCORED, index=index.index)
    qc = index["qc_pass"].astype(str).str.lower().isin(["true", "1"]) if "qc_pass" in index else True
    scored = (dx.isin(classes) & qc).to_numpy()  # as the internal test sets: QC-failed scans are not scored
    table = index[["participant_id", "session_id"]].assign(
        diagnosis=index["diagnosis"] if "diagnosis" in index else UNSCORED, set="external",
        truth=np.where(scored, dx, UNSCORED), predicted=[classes[i] for i in p.argmax(1)],
        **{f"prob_{c}": p[:, i] for i, c in enumerate(classes)}, scored=scored,
        qc_pass=index["qc_pass"] if "qc_pass" in index else True)
    write_tsv(out_tsv, table)
    return table


# ---- metrics ---------------------------------------------------------------------------------------
def _scored(pred: pd.DataFrame) -> pd.DataFrame:
    return pred[pred["scored"].astype(str).str.lower().isin(["true", "1"])]


def _classes(pred: pd.DataFrame) -> list[str]:
    return [c[5:] for c in pred.columns if c.startswith("prob_")]


def metrics_table(runs: list[dict], n_boot: int, ci: float) -> pd.DataFrame:
    """One row per run (``runs``: dicts with variant, split, run, predictions): the internal evaluation's
    metrics on the scored external scans, with participant-level bootstrap intervals, and how many scans
    were predicted and scored."""
    from braindl.evaluation import run_metrics

    rows = []
    for r in runs:
        pred = pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
        scored = _scored(pred).assign(set="test")
        m = run_metrics(scored, _classes(pred), n_boot, ci, seed=int(r["split"]) * 100 + int(r["run"])) \
            if scored["truth"].nunique() >= 1 and len(scored) else {}
        rows.append(dict(variant=r["variant"], split=int(r["split"]), run=int(r["run"]), n_predicted=len(pred),
                         n_scored=len(scored), **m))
    return pd.DataFrame(rows)


def summary_table(runs: list[dict], internal_metrics_tsv, n_boot: int, ci: float) -> pd.DataFrame:
    """Per variant, the internal test sets' and the external dataset's metrics: the mean over runs and
    an interval of that mean. External: participants resampled jointly across runs
    (:func:`~braindl.evaluation.runs_bootstrap_ci`); internal: the mean of the runs' bootstrap bounds
    (each run has its own test set)."""
    from braindl.evaluation import classification_metrics, prediction_arrays, runs_bootstrap_ci

    internal = pd.read_csv(internal_metrics_tsv, sep="\t")
    rows = []
    for variant in dict.fromkeys(r["variant"] for r in runs):
        tables = [pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
                  for r in runs if r["variant"] == variant]
        scored = [_scored(t) for t in tables]
        classes = _classes(tables[0])
        inner = internal[internal["variant"] == variant]
        for m in SCORED:
            rows.append(dict(variant=variant, source="internal", metric=m, mean=float(inner[m].mean()),
                             lo=float(inner[f"{m}_lo"].mean()) if f"{m}_lo" in inner else np.nan,
                             hi=float(inner[f"{m}_hi"].mean()) if f"{m}_hi" in inner else np.nan,
                             n_runs=int(inner[m].notna().sum()), n_scans=float(inner["n_test"].mean())))
        if not sum(len(s) for s in scored):
            continue
        arrays = [prediction_arrays(s, classes) for s in scored]
        per_run = [classification_metrics(*a) for a in arrays]
        bounds = runs_bootstrap_ci(classification_metrics, arrays, n_boot, ci, seed=0,
                                   groups=[s["participant_id"].to_numpy() for s in scored]) if n_boot else {}
        for m in SCORED:
            vals = np.asarray([r[m] for r in per_run], float)
            lo, hi = bounds.get(m, (np.nan, np.nan))
            rows.append(dict(variant=variant, source="external", metric=m,
                             mean=float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan, lo=lo, hi=hi,
                             n_runs=int(np.isfinite(vals).sum()), n_scans=float(len(scored[0]))))
    return pd.DataFrame(rows, columns=["variant", "source", "metric", "mean", "lo", "hi", "n_runs", "n_scans"])


def run_tables(runs: list[dict], internal_metrics_tsv, n_boot: int, ci: float, out_metrics, out_summary) -> None:
    write_tsv(out_metrics, metrics_table(runs, n_boot, ci))
    write_tsv(out_summary, summary_table(runs, internal_metrics_tsv, n_boot, ci))


def predictions_table(runs: list[dict], out_tsv) -> pd.DataFrame:
    """Every run's predictions of a dataset in one table (``runs``: dicts with variant, split, run,
    predictions): one row per external scan and run."""
    parts = [pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
             .assign(variant=r["variant"], split=int(r["split"]), run=int(r["run"])) for r in runs]
    table = pd.concat(parts, ignore_index=True)
    lead = ["variant", "split", "run"]
    table = table[lead + [c for c in table.columns if c not in lead]]
    write_tsv(out_tsv, table)
    return table


def figure(summary_tsv, out, style: dict, title: str = "") -> pd.DataFrame:
    """Internal test sets against the external dataset, per variant: ROC AUC and balanced accuracy (mean
    over runs with its interval). Returns the plotted values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from braindl.figures import save_figure

    s = pd.read_csv(summary_tsv, sep="\t")
    variants = list(dict.fromkeys(s["variant"]))
    metrics = ("roc_auc", "balanced_accuracy")
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 0.8, 3.4), squeeze=False)
    shown = []
    for ax, m in zip(axes[0], metrics):
        for k, source in enumerate(("internal", "external")):
            rows = s[(s.metric == m) & (s.source == source)].set_index("variant").reindex(variants)
            mean, lo, hi = (rows[c].to_numpy(float) for c in ("mean", "lo", "hi"))
            x = np.arange(len(variants)) + (k - 0.5) * 0.38
            err = np.nan_to_num(np.vstack([mean - lo, hi - mean]).clip(0))
            ax.bar(x, mean, 0.36, yerr=[list(err[0]), list(err[1])], capsize=3, label=f"{source} test", color=f"C{k}")
            shown += [dict(variant=v, source=source, metric=m, mean=a, lo=b, hi=c)
                      for v, a, b, c in zip(variants, mean, lo, hi)]
        ax.set_xticks(np.arange(len(variants)), variants)
        ax.set_ylim(0, 1.05)
        ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
        ax.set_ylabel(m.replace("_", " "))
        ax.set_xlabel("registration")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, out, int(style.get("dpi", 150)))
    return pd.DataFrame(shown)


# ---- paths and plan (cheap: the Snakefile calls them at parse time) -----------------------------------
def root(results, name) -> str:
    """The dataset's own results tree (its preprocessing module writes there too)."""
    return f"{results}/external/{name}"


def pack_paths(results, name, reg, mod) -> dict[str, str]:
    """The external dataset's packed scans, as its module's ``pack`` rule writes them."""
    pre = f"{root(results, name)}/pack/desc-{reg}_{mod}"
    return {"volumes": f"{pre}_volumes.npy", "index": f"{pre}_index.tsv", "json": f"{pre}_volumes.json"}


def prediction_path(results, name, task, mod, reg, split, run) -> str:
    return (f"{root(results, name)}/predictions/task-{task}/task-{task}_{mod}_desc-{reg}_split-{split}_run-{run}"
            "_predictions.tsv")


def table_paths(results, name, task, mod) -> dict[str, str]:
    pre = f"{root(results, name)}/task-{task}_{mod}"
    return {"predictions": f"{pre}_predictions.tsv", "metrics": f"{pre}_metrics.tsv", "summary": f"{pre}_summary.tsv"}


def figure_path(results, name, task, mod, fmt) -> str:
    return f"{results}/figures/external-{name}_task-{task}_{mod}.{fmt}"


def heat_prefix(results, name, task, mod, reg, model) -> str:
    return f"{root(results, name)}/heatmaps/task-{task}_{mod}_desc-{reg}_model-{model}"


def heatmap_paths(results, name, task, mod, reg, model, split, run, method) -> dict[str, str]:
    pre = f"{heat_prefix(results, name, task, mod, reg, model)}_split-{split}_run-{run}_method-{method}"
    return {"heatmaps": f"{pre}_heatmaps.nii.gz", "index": f"{pre}_heatmaps.tsv", "json": f"{pre}_heatmaps.json"}


def group_paths(results, name, task, mod, reg, model, method) -> dict[str, str]:
    pre = f"{heat_prefix(results, name, task, mod, reg, model)}_method-{method}"
    return {"groups": f"{pre}_groupmaps.nii.gz", "groups_tsv": f"{pre}_groupmaps.tsv",
            "runs": f"{pre}_runmaps.nii.gz", "runs_tsv": f"{pre}_runmaps.tsv", "meanbrain": f"{pre}_meanbrain.nii.gz"}


def region_paths(results, name, task, mod, reg, model, method, atlas_label) -> dict[str, str]:
    pre = f"{heat_prefix(results, name, task, mod, reg, model)}_method-{method}_atlas-{atlas_label}"
    return {"regions": f"{pre}_regions.tsv", "summary": f"{pre}_regionsummary.tsv"}


def prediction_runs(results, name, task, mod, variants, split_ids, run_ids) -> list[dict]:
    return [dict(variant=v, split=s, run=r, predictions=prediction_path(results, name, task, mod, v, s, r))
            for v in variants for s in split_ids for r in run_ids]


def heatmap_units(config: dict) -> list[tuple[str, str, str]]:
    """(task, modality, variant) of every external heatmap unit: the selected tasks that have the class
    `heatmaps.target_class`, the modalities, and the variants that `heatmaps.variants` also has
    (registered variants: the group maps need a common space)."""
    from braindl.splits import task_classes

    ext, hm = effective(config)[0], config["heatmaps"]
    if not ext["heatmap_methods"] or not ext["datasets"]:
        return []
    return [(t, m, v) for t in ext["tasks"] for m in ext["modalities"] for v in ext["variants"]
            if v in hm["variants"] and hm["target_class"] in task_classes(t)]


def targets(results, config: dict, atlas_label: str, runs=()) -> list[str]:
    """Per dataset, task and modality: the predictions table, and for a labelled dataset the metrics,
    the summary and the figure; the external heatmaps' group maps and region tables (an unlabelled
    dataset: the heatmaps of every run, ``runs`` (split, run) pairs)."""
    ext, fmt = effective(config)[0], config["figures"]["format"]
    files = []
    for name, spec in ext["datasets"].items():
        for task in ext["tasks"]:
            for mod in ext["modalities"]:
                tables = table_paths(results, name, task, mod)
                files.append(tables["predictions"])
                if spec.get("labelled", True):
                    files += [tables["metrics"], tables["summary"], figure_path(results, name, task, mod, fmt)]
        model = config["training"]["model"]
        for task, mod, reg in heatmap_units(config):
            for method in ext["heatmap_labels"]:
                if spec.get("labelled", True):
                    files.append(group_paths(results, name, task, mod, reg, model, method)["groups"])
                    files += list(region_paths(results, name, task, mod, reg, model, method, atlas_label).values())
                else:  # no classes, so no group maps or class tables: each scan's heatmap
                    files += [heatmap_paths(results, name, task, mod, reg, model, s, r, method)["heatmaps"]
                              for s, r in runs]
    return files
