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

from braindl import derivatives
from braindl.io import write_tsv
from braindl.planning import heatmap_methods, transfer_models

NAME = re.compile(r"^[A-Za-z0-9]+$")
#: what a dataset of ``external.datasets`` may set
DATASET_KEYS = ("bids_dir", "labelled", "synthetic", "filters", "participants", "diagnoses")
SCORED = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity")
UNSCORED = "n/a"


def effective(config: dict) -> tuple[dict, list[str]]:
    """The ``external`` section as it applies to the rest of ``config``, and what was left out, in words.

    ``tasks``, ``modalities``, ``variants`` and ``heatmap_methods`` select among the runs the config
    trains and the heatmaps it makes, ``transfer_models`` among the transfer experiment's models (their runs
    of the selected tasks that ``transfer.tasks`` has, on ``transfer.modality`` and ``transfer.variant``:
    ``transfer_tasks``): what it does not have is left out (config.yaml's external dataset
    must not stop a config that trains other tasks or variants), and nothing left switches external
    validation off. A dataset set to null is left out (a named config cannot remove config.yaml's keys of
    a dict, it can set one to null); a synthetic dataset (``bids_dir`` null) only beside the synthetic
    cohort, not beside a user's BIDS dataset."""
    from braindl.architectures import heatmap_refusal, method_specs

    ext = copy.deepcopy(config["external"])
    ext.setdefault("transfer_models", [])
    said = []
    xf = config["transfer"]
    # what the transfer experiment's selected runs use is not left out
    xf_use = {"tasks": xf["tasks"], "modalities": [xf["modality"]], "variants": [xf["variant"]]} \
        if set(ext["transfer_models"]) & set(transfer_models(config)) else {}
    for key, known, where in (("tasks", config["training"]["tasks"], "training.tasks"),
                              ("modalities", config["training"]["modalities"], "training.modalities"),
                              ("variants", config["registration"]["variants"], "registration.variants")):
        dropped = [v for v in ext[key] if v not in known and v not in xf_use.get(key, [])]
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
    # the transfer experiment's runs (000: 2D models on mosaics, or its 3D CNN), on its modality and variant
    arms = transfer_models(config)
    wanted = list(ext["transfer_models"])
    dropped = [a for a in wanted if a not in arms]
    if dropped and config["external"]["tasks"]:
        said.append(f"external.transfer_models: {dropped} left out (not among the transfer.models this config trains)")
    ext["transfer_models"] = [a for a in wanted if a in arms]
    ext["transfer_tasks"] = [t for t in config["external"]["tasks"] if t in xf["tasks"]] if ext["transfer_models"] \
        else []
    if ext["transfer_models"] and not ext["transfer_tasks"] and config["external"]["tasks"]:
        said.append(f"external.transfer_models: left out (no task of external.tasks is in transfer.tasks)")
        ext["transfer_models"] = []
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
        ext["tasks"] = []  # the variant comparison's runs: none selected
    if not (ext["tasks"] or ext["transfer_models"]):
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
    if ext["datasets"] and "MMSE" in ext["tasks"] + ext["transfer_tasks"]:
        problems.append("external.tasks: MMSE is a regression; external validation scores classification tasks")
    return problems


def _needs(config: dict) -> tuple[list[str], list[str]]:
    """The registration variants and modalities the selected runs read."""
    ext = effective(config)[0]
    variants, mods = (list(ext["variants"]), list(ext["modalities"])) if ext["tasks"] else ([], [])
    if ext["transfer_models"]:
        variants.append(config["transfer"]["variant"])
        mods.append(config["transfer"]["modality"])
    return variants, mods


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
    variants, mods = _needs(config)
    ds["modalities"] = [m for m in config["dataset"]["modalities"] if m in mods
                        or (m == "T1w" and config["registration"]["pet_route"] == "via_t1")]
    if spec.get("synthetic"):
        _merge(cfg["synthetic"], spec["synthetic"])
    cfg["registration"]["variants"] = module_variants(variants, config["registration"]["variants"])
    cfg["training"]["modalities"] = [m for m in config["training"]["modalities"] if m in ds["modalities"]]
    cfg["transfer"]["tasks"] = []
    cfg["pretraining"]["model"] = None
    cfg["heatmaps"]["tasks"] = []
    cfg["dose"]["training"]["models"] = []
    cfg["pif_study"]["tasks"] = []
    cfg["ms_study"]["enabled"] = False
    cfg["external"].update(datasets={}, tasks=[], transfer_models=[])
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
    """Class probabilities of one saved run for every scan of an external pack (volumes; for a run on
    mosaics, the pack's mosaics: :func:`braindl.mosaic.run_mosaics`), in the layout of the training predictions (``set`` is ``external``): ``truth`` is the diagnosis where it is one of the
    model's classes (``n/a`` otherwise, or for an unlabelled dataset), ``scored`` says which rows the
    metrics use; the QC decision of each scan is kept (``qc_pass``)."""
    import torch

    from braindl.pack import load_pack
    from braindl.training import load_model, probabilities

    if threads:
        torch.set_num_threads(int(threads))
    model, ck = load_model(model_pt)
    mosaic = ck.get("input", "volume") == "mosaic"
    classes = list(ck["classes"])
    if not classes:
        raise ValueError(f"{model_pt}: a regression run has no classes to score on an external dataset")
    arr, index = load_pack(pack_npy, index_tsv)
    shape = tuple(arr.shape[2:] if mosaic else arr.shape[1:])
    if arr.ndim != 4 or shape != tuple(ck["input_shape"]):
        what = "mosaics" if mosaic else "volumes"
        raise ValueError(f"{pack_npy}: {what} of shape {tuple(arr.shape[1:])}, the model was trained on "
                         f"{tuple(ck['input_shape'])}: prepare the external scans as the training scans")
    # a scan's mosaics (001's interleaved sets) are an ensemble, as in training.Runner.predict: each is
    # predicted and the class probabilities averaged
    probs = []
    with torch.no_grad():
        for start in range(0, len(index), int(batch_size)):
            block = torch.from_numpy(np.asarray(arr[start:start + int(batch_size)], dtype=np.float32))
            xs = [block[:, v:v + 1] for v in range(block.shape[1])] if mosaic else [block.unsqueeze(1)]
            probs.append(torch.stack([probabilities(model(x).float(), model.output) for x in xs]).mean(0).numpy())
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


def _groups(runs: list[dict]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((r.get("model", ""), r["variant"]) for r in runs))


def metrics_table(runs: list[dict], n_boot: int, ci: float) -> pd.DataFrame:
    """One row per run (``runs``: dicts with model, variant, split, run, predictions): the internal
    evaluation's metrics on the scored external scans, with participant-level bootstrap intervals, and how
    many scans were predicted and scored."""
    from braindl.evaluation import run_metrics

    rows = []
    for r in runs:
        pred = pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
        scored = _scored(pred).assign(set="test")
        m = run_metrics(scored, _classes(pred), n_boot, ci, seed=int(r["split"]) * 100 + int(r["run"])) \
            if scored["truth"].nunique() >= 1 and len(scored) else {}
        rows.append(dict(model=r.get("model", ""), variant=r["variant"], split=int(r["split"]), run=int(r["run"]),
                         n_predicted=len(pred), n_scored=len(scored), **m))
    return pd.DataFrame(rows)


def _over_runs(scored: list[pd.DataFrame], classes, n_boot: int, ci: float) -> dict:
    """Per metric: the mean over runs of the run's metric, and an interval of that mean with participants
    resampled jointly across the runs (:func:`~braindl.evaluation.runs_bootstrap_ci`)."""
    from braindl.evaluation import classification_metrics, prediction_arrays, runs_bootstrap_ci

    arrays = [prediction_arrays(s, classes) for s in scored]
    per_run = [classification_metrics(*a) for a in arrays]
    bounds = runs_bootstrap_ci(classification_metrics, arrays, n_boot, ci, seed=0,
                               groups=[s["participant_id"].to_numpy() for s in scored]) if n_boot else {}
    out = {}
    for m in SCORED:
        vals = np.asarray([r[m] for r in per_run], float)
        lo, hi = bounds.get(m, (np.nan, np.nan))
        out[m] = dict(mean=float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan, lo=lo, hi=hi,
                      n_runs=int(np.isfinite(vals).sum()), n_scans=float(len(scored[0])))
    return out


def summary_table(runs: list[dict], internal_metrics_tsv, n_boot: int, ci: float) -> pd.DataFrame:
    """Per model and variant, the internal test sets' and the external dataset's metrics: the mean over runs
    and an interval of that mean. External: participants resampled jointly across runs
    (:func:`~braindl.evaluation.runs_bootstrap_ci`). Internal, for the variant comparison's runs: the
    evaluation's metrics table (``internal_metrics_tsv``), the mean of the runs' bootstrap bounds (each run
    has its own test set); for runs that name their own predictions (``internal``: the transfer experiment's
    runs) their test rows, as the external side."""
    internal = pd.read_csv(internal_metrics_tsv, sep="\t") if internal_metrics_tsv else None
    rows = []
    for model, variant in _groups(runs):
        group = [r for r in runs if (r.get("model", ""), r["variant"]) == (model, variant)]
        tables = [pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
                  for r in group]
        scored = [_scored(t) for t in tables]
        classes = _classes(tables[0])
        if all("internal" in r for r in group):
            own = [pd.read_csv(r["internal"], sep="\t", dtype={"participant_id": str, "session_id": str})
                   for r in group]
            for m, v in _over_runs([t[t["set"] == "test"] for t in own], classes, n_boot, ci).items():
                rows.append(dict(model=model, variant=variant, source="internal", metric=m, **v))
        else:
            inner = internal[internal["variant"] == variant]
            for m in SCORED:
                rows.append(dict(model=model, variant=variant, source="internal", metric=m,
                                 mean=float(inner[m].mean()),
                                 lo=float(inner[f"{m}_lo"].mean()) if f"{m}_lo" in inner else np.nan,
                                 hi=float(inner[f"{m}_hi"].mean()) if f"{m}_hi" in inner else np.nan,
                                 n_runs=int(inner[m].notna().sum()), n_scans=float(inner["n_test"].mean())))
        if not sum(len(s) for s in scored):
            continue
        for m, v in _over_runs(scored, classes, n_boot, ci).items():
            rows.append(dict(model=model, variant=variant, source="external", metric=m, **v))
    return pd.DataFrame(rows, columns=["model", "variant", "source", "metric", "mean", "lo", "hi", "n_runs",
                                       "n_scans"])


def run_tables(runs: list[dict], internal_metrics_tsv, n_boot: int, ci: float, out_metrics, out_summary) -> None:
    write_tsv(out_metrics, metrics_table(runs, n_boot, ci))
    write_tsv(out_summary, summary_table(runs, internal_metrics_tsv, n_boot, ci))


def predictions_table(runs: list[dict], out_tsv) -> pd.DataFrame:
    """Every run's predictions of a dataset in one table (``runs``: dicts with model, variant, split, run,
    predictions): one row per external scan and run."""
    parts = [pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
             .assign(model=r.get("model", ""), variant=r["variant"], split=int(r["split"]), run=int(r["run"]))
             for r in runs]
    table = pd.concat(parts, ignore_index=True)
    lead = ["model", "variant", "split", "run"]
    table = table[lead + [c for c in table.columns if c not in lead]]
    write_tsv(out_tsv, table)
    return table


def figure(summary_tsv, out, style: dict, title: str = "") -> pd.DataFrame:
    """Internal test sets against the external dataset, per model and variant: ROC AUC and balanced
    accuracy (mean over runs with its interval). Returns the plotted values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from braindl.figures import save_figure

    s = pd.read_csv(summary_tsv, sep="\t")
    s["model"] = s["model"].fillna("").astype(str) if "model" in s else ""
    groups = list(dict.fromkeys(zip(s["model"], s["variant"])))
    several = len({m for m, _ in groups}) > 1
    labels = [f"{m}\n{v}" if several else v for m, v in groups]
    metrics = ("roc_auc", "balanced_accuracy")
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(3.2, 0.9 * len(groups) + 1.4) * len(metrics) + 0.8, 3.4),
                             squeeze=False)
    shown = []
    for ax, m in zip(axes[0], metrics):
        for k, source in enumerate(("internal", "external")):
            rows = s[(s.metric == m) & (s.source == source)].set_index(["model", "variant"]).reindex(groups)
            mean, lo, hi = (rows[c].to_numpy(float) for c in ("mean", "lo", "hi"))
            x = np.arange(len(groups)) + (k - 0.5) * 0.38
            err = np.nan_to_num(np.vstack([mean - lo, hi - mean]).clip(0))
            ax.bar(x, mean, 0.36, yerr=[list(err[0]), list(err[1])], capsize=3, label=f"{source} test", color=f"C{k}")
            shown += [dict(model=g[0], variant=g[1], source=source, metric=m, mean=a, lo=b, hi=c)
                      for g, a, b, c in zip(groups, mean, lo, hi)]
        ax.set_xticks(np.arange(len(groups)), labels, fontsize=7 if several else None)
        ax.set_ylim(0, 1.05)
        ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
        ax.set_ylabel(m.replace("_", " "))
        ax.set_xlabel("model and registration" if several else "registration")
    axes[0, 0].legend(fontsize=8)
    fig.subplots_adjust(wspace=0.35)
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
    return derivatives.pack(root(results, name), reg, mod)


def mosaic_paths(results, name, reg, mod, layout) -> dict[str, str]:
    """The external dataset's mosaics (for the transfer experiment's runs on mosaics), as its module's
    ``mosaic`` rule writes them."""
    return derivatives.mosaics(root(results, name), reg, mod, layout)


def prediction_path(results, name, task, mod, reg, split, run, model=None) -> str:
    """One run's predictions of the dataset; ``model``: a transfer experiment's model (None: the variant
    comparison's run of ``training``)."""
    entity = "" if model is None else f"_model-{model}"
    return (f"{root(results, name)}/predictions/task-{task}/task-{task}_{mod}_desc-{reg}{entity}_split-{split}"
            f"_run-{run}_predictions.tsv")


def table_paths(results, name, task, mod) -> dict[str, str]:
    pre = f"{root(results, name)}/task-{task}_{mod}"
    return {"predictions": f"{pre}_predictions.tsv", "metrics": f"{pre}_metrics.tsv", "summary": f"{pre}_summary.tsv"}


def figure_path(results, name, task, mod, fmt) -> str:
    return derivatives.figure(results, f"external-{name}_task-{task}_{mod}", fmt)


def heat_prefix(results, name, task, mod, reg, model) -> str:
    return f"{root(results, name)}/heatmaps/task-{task}_{mod}_desc-{reg}_model-{model}"


def heatmap_paths(results, name, task, mod, reg, model, split, run, method) -> dict[str, str]:
    return derivatives.heatmap_files(heat_prefix(results, name, task, mod, reg, model), split, run, method)


def group_paths(results, name, task, mod, reg, model, method) -> dict[str, str]:
    return derivatives.heatmap_groups(heat_prefix(results, name, task, mod, reg, model), method)


def region_paths(results, name, task, mod, reg, model, method, atlas_label) -> dict[str, str]:
    return derivatives.heatmap_regions(heat_prefix(results, name, task, mod, reg, model), method, atlas_label)


def prediction_runs(results, name, task, mod, variants, split_ids, run_ids, model="") -> list[dict]:
    """The variant comparison's runs of one task and modality, with their predictions of the dataset."""
    return [dict(model=model, variant=v, split=s, run=r, predictions=prediction_path(results, name, task, mod, v, s, r))
            for v in variants for s in split_ids for r in run_ids]


def transfer_runs(results, name, task, transfer: dict, models, split_ids, run_ids, internal) -> list[dict]:
    """The runs of the transfer experiment's ``models`` (the selected ones: :func:`effective`) for one task,
    with their predictions of the dataset and ``internal``, their own test predictions
    (``internal(task, model, split, run)``: a path); ``transfer`` is the config's section."""
    mod, reg = transfer["modality"], transfer["variant"]
    return [dict(model=a, variant=reg, split=s, run=r, internal=internal(task, a, s, r),
                 predictions=prediction_path(results, name, task, mod, reg, s, r, a))
            for a in models for s in split_ids for r in run_ids]


def table_units(config: dict) -> list[tuple[str, str]]:
    """(task, modality) of each table of a dataset: the selected runs of ``training`` and of the transfer
    experiment (on ``transfer.modality``)."""
    ext = effective(config)[0]
    units = [(t, m) for t in ext["tasks"] for m in ext["modalities"]]
    units += [(t, config["transfer"]["modality"]) for t in ext["transfer_tasks"]]
    return list(dict.fromkeys(units))


def heatmap_units(config: dict) -> list[tuple[str, str, str, str, list[str]]]:
    """(task, modality, variant, model, method labels) of every external heatmap unit: the selected tasks
    that have the class `heatmaps.target_class`, and the variants that `heatmaps.variants` also has
    (registered variants: the group maps need a common space); the variant comparison's model, and the
    transfer experiment's selected models that `heatmaps.transfer_models` explains, each with the methods
    of `external.heatmap_methods` that apply to it."""
    from braindl.splits import task_classes

    ext, hm, xf = effective(config)[0], config["heatmaps"], config["transfer"]
    if not ext["datasets"]:
        return []
    units = [(t, m, v, config["training"]["model"], list(ext["heatmap_labels"])) for t in ext["tasks"]
             for m in ext["modalities"] for v in ext["variants"] if v in hm["variants"]]
    wanted = [m for m in config["external"]["heatmap_methods"] if m in hm["methods"]]
    for arm in ext["transfer_models"]:
        if arm not in hm["transfer_models"] or xf["variant"] not in hm["variants"]:
            continue
        labels = heatmap_methods(config, arm, wanted)
        units += [(t, xf["modality"], xf["variant"], arm, labels) for t in ext["transfer_tasks"]]
    return [u for u in units if u[4] and hm["target_class"] in task_classes(u[0])]


def targets(results, config: dict, atlas_label: str, runs=()) -> list[str]:
    """Per dataset, task and modality: the predictions table, and for a labelled dataset the metrics,
    the summary and the figure; the external heatmaps' group maps and region tables (an unlabelled
    dataset: the heatmaps of every run, ``runs`` (split, run) pairs)."""
    ext, fmt = effective(config)[0], config["figures"]["format"]
    files = []
    for name, spec in ext["datasets"].items():
        for task, mod in table_units(config):
            tables = table_paths(results, name, task, mod)
            files.append(tables["predictions"])
            if spec.get("labelled", True):
                files += [tables["metrics"], tables["summary"], figure_path(results, name, task, mod, fmt)]
        for task, mod, reg, model, labels in heatmap_units(config):
            for method in labels:
                if spec.get("labelled", True):
                    files.append(group_paths(results, name, task, mod, reg, model, method)["groups"])
                    files += list(region_paths(results, name, task, mod, reg, model, method, atlas_label).values())
                else:  # no classes, so no group maps or class tables: each scan's heatmap
                    files += [heatmap_paths(results, name, task, mod, reg, model, s, r, method)["heatmaps"]
                              for s, r in runs]
    return files
