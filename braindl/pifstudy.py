"""004 study 5's experiment: a baseline CNN against its PIF version, each with the thesis' random search.

Planning and summaries (no torch at import): which runs exist, with which
hyperparameters, which one each split keeps, and the table of the study; :func:`run_search`
trains the samples of one search in one process (braindl.training, imported there).

"As the results of CNNs can considerably vary between single training runs ... we
repeat our experiments in 10 outer folds, each time randomly sampling the data into
training, validation, and test sets. For each of the 10 data splits, we run
hyperparameter optimization on the validation set by performing 5 experiments with
randomly sampled hyperparameters from Table 1. We defined that both architecture
variants needed to be sampled at least two times within five repetitions, whereas
all other parameters had no sampling constraints. The best hyperparameter settings
per validation set are then used on the independent test set, leading to 10 test
scores which were averaged to present the final model performance."

Table 1: architecture [Model A, Model B], learning rate [1e-4, 5e-5], mini-batch
size [4, 6, 12], patience [12, 16]. "we have run an additional comparison on a
randomly sampled 20% subset" of the training data. The measures: AUC ROC,
balanced accuracy, sensitivity, specificity, "the number of iterations until
early stopping occurs" and the training time in seconds.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from braindl import derivatives
from braindl.pretraining import size_label  # the size- entity, as the pre-training sweep's paths

#: 004 study 5, Table 1
TABLE1 = {"architecture": ["A", "B"], "learning_rate": [1.0e-4, 5.0e-5], "batch_size": [4, 6, 12],
          "patience": [12, 16]}
#: the networks of each family and architecture (:mod:`braindl.models`)
MODELS = {("baseline", "A"): "vgg3d_a", ("baseline", "B"): "vgg3d_b", ("pif", "A"): "pif3d_a",
          ("pif", "B"): "pif3d_b"}
MEASURES = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity", "epochs", "seconds")
FAMILIES = ("baseline", "pif")


def sample_hyperparameters(seed: int, n: int = 5, space: dict | None = None,
                           min_per_architecture: int = 2) -> list[dict]:
    """``n`` random draws from ``space`` (Table 1) in which every architecture appears at least
    ``min_per_architecture`` times; the other parameters are drawn without constraint."""
    space = TABLE1 if space is None else space
    archs = list(space["architecture"])
    if min_per_architecture * len(archs) > n:
        raise ValueError(f"{n} samples cannot hold {min_per_architecture} of each of {archs}")
    rng = np.random.default_rng(int(seed))
    chosen = [a for a in archs for _ in range(min_per_architecture)]
    chosen += [archs[int(i)] for i in rng.integers(len(archs), size=n - len(chosen))]
    chosen = [chosen[int(i)] for i in rng.permutation(n)]
    out = []
    for k, arch in enumerate(chosen):
        draw = {key: values[int(rng.integers(len(values)))] for key, values in space.items() if key != "architecture"}
        out.append({"sample": k, "architecture": arch, **draw})
    return out


def search_space(study: dict) -> dict:
    """Table 1 as ``study`` (config ``pif_study``) sizes it: architectures, learning rates, batch sizes,
    patience values."""
    return {"architecture": list(study["architectures"]), "learning_rate": [float(v) for v in study["learning_rates"]],
            "batch_size": [int(v) for v in study["batch_sizes"]], "patience": [int(v) for v in study["patience"]]}


def plan(n_splits: int, seed: int, n_samples: int = 5, fractions=(1.0, 0.2),
         families=("baseline", "pif"), space: dict | None = None, min_per_architecture: int = 2) -> pd.DataFrame:
    """Every run of the study: split x family x training fraction x sample, with its hyperparameters
    and network. The samples are drawn per split and shared by the families and fractions, so that
    baseline and PIF meet the same settings."""
    rows = []
    for split in range(1, int(n_splits) + 1):
        for hp in sample_hyperparameters(int(seed) * 1000 + split, int(n_samples), space, int(min_per_architecture)):
            for family in families:
                for fraction in fractions:
                    rows.append({"split": split, "family": family, "fraction": float(fraction), **hp,
                                 "model": MODELS[(family, hp["architecture"])]})
    return pd.DataFrame(rows)


def study_plan(study: dict, n_splits: int) -> pd.DataFrame:
    """:func:`plan` of the config section ``pif_study``, with each run's ``size`` label (percent)."""
    runs = plan(n_splits, study["seed"], study["samples"], study["fractions"], space=search_space(study),
                min_per_architecture=study["min_per_architecture"])
    return runs.assign(size=[size_label(f) for f in runs["fraction"]])


def run_settings(training: dict, study: dict, family: str, hp: dict) -> dict:
    """Training settings of one run: config ``training`` (without its task and transfer keys), the
    sample's architecture and hyperparameters, and the study's augmentation. "For the PIF architecture,
    we performed only translation and not flipping, since the PIF layer requires patches to have the
    same content during each training iteration" (004 study 5); the translation is "along the sagittal
    axis"."""
    skip = {"tasks", "modalities", "finetune_from", "pretrained", "freeze", "model"}
    out = {k: v for k, v in training.items() if k not in skip}
    out.update(model=MODELS[(family, hp["architecture"])], learning_rate=float(hp["learning_rate"]),
               batch_size=int(hp["batch_size"]), early_stopping_patience=int(hp["patience"]),
               max_epochs=int(study["max_epochs"]), pretrained=None, freeze="none",
               augment_flip=0.0 if family == "pif" else float(study["augment_flip"]),
               augment_shift_voxels=int(study["augment_shift_voxels"]), augment_shift_axis="sagittal")
    if family != "pif":
        out.pop("pif_grid", None), out.pop("pif_filters", None)  # their changes do not rerun the baseline
    return out


def training_subset(labels: pd.Series, fraction: float, seed: int) -> list[str]:
    """The "randomly sampled 20% subset" of a split's training participants, stratified by class:
    ``labels`` maps participant -> class; each class keeps ``round(fraction * n)`` (at least one) of its
    participants. Nested: with one seed, a smaller fraction keeps a subset of a larger one's."""
    labels = labels[~labels.index.duplicated()]
    keep = []
    for k, (cls, group) in enumerate(labels.groupby(labels, sort=True)):
        ids = sorted(group.index)
        order = [ids[int(i)] for i in np.random.default_rng([int(seed), k]).permutation(len(ids))]
        keep += order[:max(1, int(round(float(fraction) * len(ids))))]
    return sorted(keep)


def subset_split(split_tsv, task: str, fraction: float, seed: int, out_tsv) -> pd.DataFrame:
    """A split whose training set keeps :func:`training_subset` of its participants (classes of
    ``task``); validation and test sets are unchanged."""
    from braindl import splits
    from braindl.io import write_tsv

    table = splits.read_split(split_tsv)
    train = table[table["set"] == "train"]
    labels = pd.Series(splits.task_labels(train, task).to_numpy(), index=train["participant_id"]).dropna()
    if labels.empty:
        raise ValueError(f"{split_tsv}: no training participant has a class of task {task}")
    keep = training_subset(labels, fraction, seed)
    out = table[(table["set"] != "train") | table["participant_id"].isin(keep)].reset_index(drop=True)
    write_tsv(out_tsv, out)
    return out


def select_best(runs: pd.DataFrame, metric: str = "validation_roc_auc") -> pd.DataFrame:
    """Per split, family and fraction, the sample with the best ``metric`` on the validation set (the
    first on ties)."""
    if runs.empty:
        raise ValueError("no runs to select from")
    ordered = runs.sort_values(["split", "family", "fraction", metric, "sample"],
                               ascending=[True, True, True, False, True], kind="stable")
    return ordered.groupby(["split", "family", "fraction"], sort=True).head(1).reset_index(drop=True)


def summary_table(best: pd.DataFrame) -> pd.DataFrame:
    """Table 2 of study 5: per family and fraction, the mean and SD over splits of the kept runs' test
    measures, the number of splits, and how often each architecture was kept."""
    rows = []
    for (family, fraction), g in best.groupby(["family", "fraction"], sort=True):
        row = {"family": family, "fraction": fraction, "n_splits": len(g)}
        for m in MEASURES:
            row[f"{m}_mean"] = float(g[m].mean())
            row[f"{m}_sd"] = float(g[m].std(ddof=1)) if len(g) > 1 else float("nan")
        for arch in TABLE1["architecture"]:
            row[f"kept_{arch}"] = int((g["architecture"] == arch).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def runs_table(runs: list[dict]) -> pd.DataFrame:
    """One row per trained run: its plan entries (``runs``: dicts of the plan with the run's
    ``predictions`` and ``summary`` files and its ``task``), the validation ROC AUC the search selects
    on, and the test measures. ``epochs`` is "the number of iterations until early stopping" (epochs
    run), ``seconds`` the training time."""
    import json
    from pathlib import Path

    from braindl.evaluation import classification_metrics, prediction_arrays

    rows = []
    for r in runs:
        summary = json.loads(Path(r["summary"]).read_text())
        pred = pd.read_csv(r["predictions"], sep="\t", dtype={"participant_id": str, "session_id": str})
        classes = summary["classes"]
        val = classification_metrics(*prediction_arrays(pred[pred["set"] == "validation"], classes))
        test = classification_metrics(*prediction_arrays(pred[pred["set"] == "test"], classes))
        plan_keys = {k: r[k] for k in ("task", "split", "family", "fraction", "sample", "architecture",
                                       "learning_rate", "batch_size", "patience", "model")}
        rows.append({**plan_keys, "validation_roc_auc": val["roc_auc"],
                     "validation_balanced_accuracy": val["balanced_accuracy"],
                     **{m: test[m] for m in MEASURES[:4]}, "epochs": int(summary["epochs"]),
                     "best_epoch": int(summary["best_epoch"]), "seconds": float(summary["seconds"]),
                     "n_train": int(summary["n_train"]), "n_test": int(summary["n_test"])})
    return pd.DataFrame(rows)


def study_tables(runs: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every run with ``selected`` marking the kept sample of its split, family and fraction; the
    per-task :func:`summary_table`). A run whose validation AUC is undefined (one class in the
    validation set) ranks last."""
    table = runs_table(runs)
    table["validation_roc_auc"] = table["validation_roc_auc"].astype(float)
    ranked = table.assign(_rank=table["validation_roc_auc"].fillna(-np.inf))
    kept = []
    for task, g in ranked.groupby("task", sort=False):
        best = select_best(g, "_rank")
        kept += [(task, *k) for k in best[["split", "family", "fraction", "sample"]].itertuples(index=False)]
    key = list(zip(table["task"], table["split"], table["family"], table["fraction"], table["sample"]))
    table["selected"] = [k in set(kept) for k in key]
    summary = pd.concat([summary_table(g[g["selected"]]).assign(task=task) for task, g in table.groupby("task", sort=False)],
                        ignore_index=True)
    summary = summary[["task", *[c for c in summary.columns if c != "task"]]]
    return table, summary


def run_study_tables(runs: list[dict], out_runs, out_summary) -> None:
    from braindl.io import write_tsv

    table, summary = study_tables(runs)
    write_tsv(out_runs, table)
    write_tsv(out_summary, summary)


def study_figure(summary_tsv, out, style: dict) -> pd.DataFrame:
    """Test ROC AUC and epochs until early stopping (mean +- SD over splits of the kept runs) per family
    and training fraction, one column of panels per task (004 study 5's Table 2 and Figure 6). Returns
    the plotted values (task, family, fraction, measure, mean, sd)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from braindl.figures import save_figure

    t = pd.read_csv(summary_tsv, sep="\t")
    tasks = list(dict.fromkeys(t["task"]))
    fractions = sorted(t["fraction"].unique(), reverse=True)
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.6 * len(tasks), 5.6), squeeze=False)
    plotted = []
    width = 0.8 / len(FAMILIES)
    for j, task in enumerate(tasks):
        for i, (measure, label) in enumerate((("roc_auc", "test ROC AUC"), ("epochs", "epochs until early stopping"))):
            ax = axes[i, j]
            for k, family in enumerate(FAMILIES):
                rows = t[(t["task"] == task) & (t["family"] == family)].set_index("fraction").reindex(fractions)
                mean, sd = rows[f"{measure}_mean"].to_numpy(float), rows[f"{measure}_sd"].to_numpy(float)
                x = np.arange(len(fractions)) + (k - (len(FAMILIES) - 1) / 2) * width
                ax.bar(x, mean, width, yerr=np.nan_to_num(sd), capsize=3, label=family)
                plotted += [dict(task=task, family=family, fraction=f, measure=measure, mean=m, sd=s)
                            for f, m, s in zip(fractions, mean, sd)]
            ax.set_xticks(np.arange(len(fractions)), [f"{f:.0%} of training" for f in fractions])
            ax.set_ylabel(label)
            if measure == "roc_auc":
                ax.axhline(0.5, color="0.5", ls=":", lw=1)
                ax.set_ylim(0, 1)
                ax.set_title(task)
    axes[0, 0].legend(fontsize=8)
    save_figure(fig, out, int(style.get("dpi", 150)))
    return pd.DataFrame(plotted)


# ---- paths (BIDS-derivatives style; cheap: the Snakefile calls them at parse time) ----------------------
def subset_path(results, task, size, split) -> str:
    return f"{results}/pifstudy/splits/task-{task}_size-{size}_split-{split}_split.tsv"


def run_paths(results, study: dict, task, family, size, split, sample) -> dict[str, str]:
    """The four files of one run (wildcard patterns when given ``{...}`` strings)."""
    mod, reg = study["modality"], study["variant"]
    pre = (f"{results}/pifstudy/task-{task}/family-{family}/task-{task}_{mod}_desc-{reg}_family-{family}"
           f"_size-{size}_split-{split}_sample-{sample}")
    return derivatives.run_files(pre)


def table_paths(results, study: dict) -> dict[str, str]:
    pre = f"{results}/pifstudy/{study['modality']}_desc-{study['variant']}"
    return {"runs": f"{pre}_runs.tsv", "summary": f"{pre}_summary.tsv"}


def figure_path(results, study: dict, fmt: str) -> str:
    return derivatives.figure(results, f"pifstudy_{study['modality']}_desc-{study['variant']}", fmt)


def search_runs(training: dict, study: dict, runs: pd.DataFrame, split, family: str, size: str) -> list[dict]:
    """The samples of one random search (one split, family and training fraction; every task has the
    same): per sample its number, its seed index ``run`` (sample + 1, braindl.training.run_seed) and its
    training settings (:func:`run_settings`). One job trains them all: the search is the study's unit
    (the best sample per split is kept), and a change of the plan redraws every sample of a search."""
    rows = runs[(runs["split"] == int(split)) & (runs["family"] == family) & (runs["size"] == size)]
    if rows.empty:
        raise KeyError(f"no planned search split {split}, family {family}, size {size}")
    return [{"sample": int(r["sample"]), "run": int(r["sample"]) + 1, "settings": run_settings(training, study, family, r)}
            for r in rows.sort_values("sample").to_dict("records")]


def search_paths(results, study: dict, task, family, size, split) -> dict[str, str]:
    """The files of every run of one search, keyed ``<file>_sample-<k>`` (``file`` one of
    braindl.derivatives.run_files' keys; wildcard patterns when given ``{...}`` strings)."""
    return {f"{key}_sample-{k}": path for k in range(int(study["samples"]))
            for key, path in run_paths(results, study, task, family, size, split, k).items()}


def run_search(pack_npy, index_tsv, split_tsv, task: str, split: int, runs: list[dict], outputs: dict,
               threads: int | None = None, checkpoint_s: float = 60.0, keep_state: bool = False) -> list[dict]:
    """Train the samples of one search (:func:`search_runs`) one after the other in this process, each
    as braindl.training.train_run writes a run: its files are ``outputs``' ``<file>_sample-<k>`` entries
    (:func:`search_paths`), its checkpoints beside its model (kept after the run with ``keep_state``, for
    :func:`run_searches`). Returns the runs' summaries."""
    from braindl.logs import progress
    from braindl.training import train_run

    out = []
    for r in runs:
        files = {key: outputs[f"{key}_sample-{r['sample']}"] for key in derivatives.run_files("")}
        progress(f"sample {r['sample']} ({r['settings']['model']}, learning rate {r['settings']['learning_rate']}, "
                 f"batch {r['settings']['batch_size']}, patience {r['settings']['early_stopping_patience']})")
        out.append(train_run(pack_npy, index_tsv, split_tsv, task, r["settings"], int(split), int(r["run"]), files,
                             derivatives.run_state_dir(files["model"]), threads=threads, checkpoint_s=checkpoint_s,
                             keep_state=keep_state))
    return out


def job_splits(mode: str, splits: list[str], split: str = "{split}") -> list[str]:
    """The splits whose searches one job of a task, family and size trains (``mode``: the config's
    ``resources.training_job_runs``, braindl.planning.job_runs): every split (``unit``: one process, torch
    and MONAI imported once), or ``split`` alone (``split`` and ``run``: a search, the study's unit, is the
    smallest job). With the default ``split`` the wildcard of the rule's outputs; with a job's, its own."""
    from braindl.planning import job_runs

    return list(dict.fromkeys(s for s, _ in job_runs(mode, splits, ["01"], split, "01",
                                                      "resources.training_job_runs")))


def job_paths(results, study: dict, task, family, size, splits: list[str]) -> dict[str, str]:
    """The files of every run of one job's searches (:func:`job_splits`), keyed
    ``<file>_sample-<k>_split-<split>`` (:func:`search_paths`' keys of each split)."""
    return {f"{key}_split-{s}": path for s in splits
            for key, path in search_paths(results, study, task, family, size, s).items()}


def run_searches(pack_npy, index_tsv, split_tsvs: dict, task: str, runs: dict, outputs: dict,
                 threads: int | None = None, checkpoint_s: float = 60.0) -> list[dict]:
    """The searches of one job, split after split in this process (:func:`run_search` each).

    ``split_tsvs`` and ``runs`` are keyed by split (``"01"``, ...), ``runs`` each a search's
    :func:`search_runs`; ``outputs`` holds :func:`job_paths`' keys. A missing or extra split is refused
    before any training. Each run's checkpoint is kept until the job's last search is done, so a job
    stopped in a later search resumes the finished runs at their last epoch (as braindl.training.train_runs).
    Returns every run's summary, in order."""
    splits = list(split_tsvs)
    if sorted(splits) != sorted(runs):
        raise ValueError(f"pif_search: split tables of splits {sorted(splits)} but runs of {sorted(runs)}")
    per_split = {}
    for split in splits:
        tail = f"_split-{split}"
        per_split[split] = {k[:-len(tail)]: v for k, v in outputs.items() if k.endswith(tail)}
        wanted = {f"{key}_sample-{r['sample']}" for r in runs[split] for key in derivatives.run_files("")}
        if not wanted <= set(per_split[split]):
            raise ValueError(f"pif_search: split {split} lacks outputs {sorted(wanted - set(per_split[split]))}")
    out = []
    for split in splits:
        out += run_search(pack_npy, index_tsv, split_tsvs[split], task, int(split), runs[split], per_split[split],
                          threads, checkpoint_s, keep_state=True)
    for split in splits:
        for r in runs[split]:
            shutil.rmtree(derivatives.run_state_dir(per_split[split][f"model_sample-{r['sample']}"]), ignore_errors=True)
    return out


def planned_runs(results, study: dict, runs: pd.DataFrame) -> list[dict]:
    """Every run of every task with its plan entries and files (the table job's input)."""
    out = []
    for task in study["tasks"]:
        for row in runs.to_dict("records"):
            split = f"{row['split']:02d}"
            files = run_paths(results, study, task, row["family"], row["size"], split, row["sample"])
            out.append({**row, "task": task, "split": split, "predictions": files["predictions"],
                        "summary": files["summary"]})  # "model" stays the network's name
    return out
