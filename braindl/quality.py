"""PET image-quality regression on patches of the dose reconstructions (002).

- :func:`train_quality`: a 2D backbone with a flatten + linear head of three
  outputs, MSE, Adam (:class:`braindl.training.ArrayRunner`) in the loop of
  :func:`braindl.training.fit` (best epoch on validation loss, checkpoints,
  resume), on the patches and labels of :mod:`braindl.patches`;
  :func:`train_quality_runs` trains the runs of one workflow job in one process.
- :func:`quality_table`: one row per run, plus ensembles of repeated runs.
- The figures of 002: the count levels of one scan (Fig. 1), MAE against
  training patients (Fig. 5), freezing regimes (Fig. 8). None needs torch.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from braindl.derivatives import run_state_dir
from braindl.figures import save_figure
from braindl.io import job_file_lists, write_json, write_tsv
from braindl.logs import progress
from braindl.patches import METRICS, DoseError


def load_set(patch_files: dict, scores: pd.DataFrame, members: list[str]) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Patches, targets ``(n, 3)`` and one row per patch of the scored reconstructions of ``members``.

    ``patch_files`` maps ``(participant_id, session_id, level)`` to a patch ``.npy``.
    """
    xs, ys, rows = [], [], []
    for r in scores[scores["participant_id"].isin(members)].itertuples(index=False):
        key = (r.participant_id, r.session_id, float(r.level))
        if key not in patch_files:
            raise DoseError(f"dose: no patches for {key}")
        p = np.load(patch_files[key]).astype(np.float32)
        xs.append(p)
        ys.append(np.tile([[getattr(r, m) for m in METRICS]], (len(p), 1)))
        rows.append(pd.DataFrame({"participant_id": r.participant_id, "session_id": r.session_id,
                                  "level": float(r.level), "patch": np.arange(len(p))}))
    if not xs:
        raise DoseError(f"dose: no scored reconstruction for patients {members}")
    return np.concatenate(xs), np.concatenate(ys).astype(np.float32), pd.concat(rows, ignore_index=True)


def train_quality(patch_files: dict, scores_tsv, fold: dict, n_train: int, settings: dict, run: int, out: dict,
                  state_dir, threads: int | None = None, log=None, checkpoint_s: float = 60.0,
                  keep_state: bool = False) -> dict:
    """Train one quality regressor on the first ``n_train`` patients of the fold's pool (checkpoints
    every ``checkpoint_s`` seconds at most: :func:`braindl.training.fit`, in ``state_dir``, removed once
    the outputs are written unless ``keep_state``).

    ``settings``: ``model``, ``freeze``, ``weights``, ``learning_rate``,
    ``batch_size``, ``max_epochs``, ``early_stopping_patience``, ``seed``,
    ``device``. Writes ``out``: predictions (validation + test, one row per
    patch), history and a summary JSON with the test MAE (per patch and per
    reconstruction, overall and per score).
    """
    import torch  # here: the tables and figures of this module need no torch

    from braindl import training

    log = log or progress
    if threads:
        torch.set_num_threads(int(threads))
    dev = training.pick_device(settings.get("device", "auto"))
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True)
    scores = pd.read_csv(scores_tsv, sep="\t", dtype={"participant_id": str, "session_id": str})
    scores = scores.assign(level=scores["level"].astype(float))
    members = {"train": fold["pool"][:n_train], "validation": fold["validation"], "test": fold["test"]}
    data = {k: load_set(patch_files, scores, v) for k, v in members.items()}
    seed = training.run_seed(int(settings["seed"]), int(fold["fold"]) * 1000 + int(n_train), run)
    runner = training.ArrayRunner({k: v[0] for k, v in data.items()}, {k: v[1] for k, v in data.items()}, settings, dev, seed, n_outputs=len(METRICS))
    total = sum(p.numel() for p in runner.model.parameters())
    log(f"{settings['model']} on {dev}: {runner.trainable:,} of {total:,} parameters trainable "
        f"(freeze {settings['freeze']}); {n_train} training patients, {len(data['train'][0])} patches")
    digest = training.settings_digest({**settings, "fold": fold, "n_train": n_train, "run": run})
    history, _, best_epoch, _ = training.fit(runner, settings, "validation_loss", -1, digest, state_dir, log,
                                             label=f"fold {fold['fold']} n {n_train} run {run}",
                                             checkpoint_s=checkpoint_s)
    preds = []
    for which in ("validation", "test"):
        _, outp = runner.predict(which)
        t = data[which][2].assign(set=which)
        for i, m in enumerate(METRICS):
            t[f"true_{m}"] = data[which][1][:, i]
            t[f"pred_{m}"] = outp[:, i]
        preds.append(t)
    preds = pd.concat(preds, ignore_index=True)
    test = preds[preds["set"] == "test"]
    summary = dict(model=settings["model"], freeze=settings["freeze"], weights=runner.weights,
                   fold=int(fold["fold"]), n_train=int(n_train), run=int(run), seed=seed, device=str(dev),
                   train_patients=members["train"], validation_patients=members["validation"],
                   test_patients=members["test"], n_train_patches=int(len(data["train"][0])),
                   trainable_parameters=runner.trainable, epochs=len(history), best_epoch=best_epoch,
                   **mae_of(test), seconds=round(sum(h["seconds"] for h in history), 2))
    write_tsv(out["predictions"], preds)
    write_tsv(out["history"], pd.DataFrame(history))
    write_json(out["summary"], summary)
    if not keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    return summary


#: the files each image-quality run writes (rule dose_train, braindl.derivatives.dose_run)
RUN_OUTPUTS = ("predictions", "history", "summary")


def train_quality_runs(patch_files: dict, scores_tsv, runs: list[dict], settings: dict, out: dict,
                       threads: int | None = None, log=None, checkpoint_s: float = 60.0) -> list[dict]:
    """:func:`train_quality` for several runs of one backbone and regime, one after another in one
    process: the runs ``resources.training_job_runs`` puts in one job
    (:func:`braindl.planning.dose_job_runs`), so torch is imported once for them.

    ``runs``: one ``{"n": training patients, "fold": the fold (braindl.patches.quality_folds), "run": the
    run}`` per run; each of ``out``'s :data:`RUN_OUTPUTS` lists one file per run in the same order (a
    single path stands for a one-run list), checked against ``runs`` before the first run. ``patch_files``
    holds the patches of every run's patients. Each run equals a call of :func:`train_quality` on it
    alone; its checkpoint folder is beside its summary (:func:`braindl.derivatives.run_state_dir`) and is
    kept until the last run is done, so that a job stopped on a later run resumes the finished ones from
    their last epoch. Returns the summaries."""
    lists = job_file_lists({f"output {k}": out.get(k) for k in RUN_OUTPUTS}, "dose regression runs of one job",
                           DoseError, runs=len(runs))
    state_dirs = [run_state_dir(summary) for summary in lists["output summary"]]
    summaries = []
    for i, r in enumerate(runs):
        (log or progress)(f"fold {r['fold']['fold']} n {r['n']} run {r['run']} ({i + 1} of {len(runs)} in this job)")
        summaries.append(train_quality(patch_files, scores_tsv, r["fold"], int(r["n"]), settings, int(r["run"]),
                                       {k: lists[f"output {k}"][i] for k in RUN_OUTPUTS}, state_dirs[i],
                                       threads=threads, log=log, checkpoint_s=checkpoint_s, keep_state=True))
    for state_dir in state_dirs:
        shutil.rmtree(state_dir, ignore_errors=True)
    return summaries


def mae_of(pred: pd.DataFrame) -> dict:
    """Test MAE over patches (002) and over reconstructions (patch predictions averaged), overall and per score."""
    out = {}
    t = [pred[f"true_{m}"].to_numpy() for m in METRICS]
    p = [pred[f"pred_{m}"].to_numpy() for m in METRICS]
    out["mae"] = float(np.mean([np.abs(a - b).mean() for a, b in zip(t, p)]))
    for m, a, b in zip(METRICS, t, p):
        out[f"mae_{m}"] = float(np.abs(a - b).mean())
    rec = pred.groupby(["participant_id", "session_id", "level"])[
        [f"true_{m}" for m in METRICS] + [f"pred_{m}" for m in METRICS]].mean()
    out["mae_reconstruction"] = float(np.mean([np.abs(rec[f"true_{m}"] - rec[f"pred_{m}"]).mean() for m in METRICS]))
    return out


# ---- tables and figures ------------------------------------------------------------------------------
def quality_table(runs: list[dict]) -> pd.DataFrame:
    """One row per run (from its summary), plus one ``ensemble`` row per model, regime and size where
    several runs share a fold: the MAE of their mean prediction."""
    rows, groups = [], {}
    for r in runs:
        s = json.loads(Path(r["summary"]).read_text())
        rows.append({k: s[k] for k in ("model", "freeze", "fold", "n_train", "run", "trainable_parameters",
                                       "epochs", "best_epoch", "mae", "mae_gqr", "mae_pr", "mae_dc",
                                       "mae_reconstruction", "seconds")} | {"kind": "run"})
        groups.setdefault((s["model"], s["freeze"], s["n_train"], s["fold"]), []).append(r["predictions"])
    for (model, freeze, n, fold), files in groups.items():
        if len(files) < 2:
            continue
        preds = [pd.read_csv(f, sep="\t", dtype={"participant_id": str, "session_id": str}) for f in files]
        mean = preds[0].copy()
        for m in METRICS:
            mean[f"pred_{m}"] = np.mean([p[f"pred_{m}"].to_numpy() for p in preds], axis=0)
        rows.append({"model": model, "freeze": freeze, "fold": fold, "n_train": n, "run": len(files),
                     "kind": "ensemble", **mae_of(mean[mean["set"] == "test"])})
    return pd.DataFrame(rows).sort_values(["model", "freeze", "n_train", "kind", "fold", "run"]).reset_index(drop=True)


def run_quality_table(runs: list[dict], out_tsv) -> None:
    write_tsv(out_tsv, quality_table(runs))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _regimes(t: pd.DataFrame) -> list[str]:
    order = ["head_only", "first_60_percent", "none"]
    return sorted(t["freeze"].unique(), key=order.index)


def sizes_figure(table_tsv, out, style: dict) -> pd.DataFrame:
    """002 Fig. 5: test MAE against the number of training patients, one panel per backbone
    (boxes over folds, one colour per freezing regime), with the 0.5 label-noise and 1.3 chance lines.
    Returns the plotted points (model, freeze, n_train, mae)."""
    plt = _plt()
    t = pd.read_csv(table_tsv, sep="\t")
    t = t[(t["kind"] == "run") & (t["run"] == 0)]
    names = sorted(t["model"].unique())
    cols = min(len(names), 4)
    fig, axes = plt.subplots(math.ceil(len(names) / cols), cols, figsize=(3.2 * cols, 2.8 * math.ceil(len(names) / cols)),
                             squeeze=False, sharey=True)
    regimes = _regimes(t)
    shown = []
    for ax, name in zip(axes.ravel(), names):
        d = t[t["model"] == name]
        sizes = sorted(d["n_train"].unique())
        for k, reg in enumerate(regimes):
            data = [d[(d["n_train"] == n) & (d["freeze"] == reg)]["mae"].to_numpy() for n in sizes]
            pos = np.arange(len(sizes)) + (k - (len(regimes) - 1) / 2) * 0.3
            bp = ax.boxplot(data, positions=pos, widths=0.25, patch_artist=True, showfliers=False,
                            medianprops={"color": "k"})
            for b in bp["boxes"]:
                b.set_facecolor(f"C{k}")
                b.set_alpha(0.5)
            for p_, v, n in zip(pos, data, sizes):  # every fold
                ax.scatter(np.full(len(v), p_), v, s=8, color=f"C{k}", zorder=3)
                shown += [dict(model=name, freeze=reg, n_train=int(n), mae=float(m)) for m in v]
            ax.plot([], [], color=f"C{k}", lw=6, label=reg)
        ax.axhline(0.5, ls="--", color="0.5", lw=0.8)
        ax.axhline(1.3, ls="--", color="0.5", lw=0.8)
        ax.set_xticks(np.arange(len(sizes)), [str(n) for n in sizes])
        params = int(d[d["freeze"] == regimes[0]]["trainable_parameters"].iloc[0])
        ax.set_title(f"{name} ({params:,})", fontsize=9)
        ax.set_xlabel("training patients")
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("test MAE")
    axes[0, 0].legend(fontsize=7)
    save_figure(fig, out, int(style.get("dpi", 150)))
    return pd.DataFrame(shown)


def regimes_figure(table_tsv, out, style: dict) -> pd.DataFrame:
    """002 Fig. 8: test MAE per backbone with only the head trained vs the first 60 % frozen
    (largest training set, mean +- SE over folds), trainable parameters annotated. Returns the bars
    (model, freeze, mean, se)."""
    plt = _plt()
    t = pd.read_csv(table_tsv, sep="\t")
    t = t[(t["kind"] == "run") & (t["run"] == 0)]
    t = t[t["n_train"] == t["n_train"].max()]
    names = sorted(t["model"].unique())
    regimes = _regimes(t)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(names) + 2), 3.4))
    width = 0.8 / len(regimes)
    shown = []
    for k, reg in enumerate(regimes):
        g = t[t["freeze"] == reg].groupby("model")
        mean, se = g["mae"].mean().reindex(names), (g["mae"].std(ddof=1) / np.sqrt(g["mae"].count())).reindex(names)
        x = np.arange(len(names)) + (k - (len(regimes) - 1) / 2) * width
        bars = ax.bar(x, mean.to_numpy(), width, yerr=np.nan_to_num(se.to_numpy()), capsize=2,
                      color=str(0.35 + 0.4 * k / max(len(regimes) - 1, 1)), label=reg)
        shown += [dict(model=n, freeze=reg, mean=float(m), se=float(e)) for n, m, e in zip(names, mean, se)]
        params = g["trainable_parameters"].first().reindex(names)
        for b, p in zip(bars, params):
            ax.annotate(f"{int(p):,}", (b.get_x() + b.get_width() / 2, b.get_height()), fontsize=6,
                        ha="center", va="bottom", rotation=90, xytext=(0, 3), textcoords="offset points")
    ax.axhline(0.5, ls="--", color="C1", lw=0.8)
    ax.set_ylim(0, 1.3 * max(float(t["mae"].max()), 0.6))
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel(f"test MAE ({int(t['n_train'].max())} training patients)")
    ax.legend(fontsize=7, title="frozen", title_fontsize=7)
    save_figure(fig, out, int(style.get("dpi", 150)))
    return pd.DataFrame(shown)


def levels_figure(recons: dict, out, style: dict) -> pd.DataFrame:
    """002 Fig. 1: the same axial slice (through the activity's centre) at every count level."""
    import nibabel as nib

    plt = _plt()
    levels = sorted(recons, key=float)
    vols = {v: np.asarray(nib.load(str(recons[v])).dataobj, dtype=np.float32) for v in levels}
    full = vols[levels[-1]]
    z = int(round(float((full.sum((0, 1)) * np.arange(full.shape[2])).sum() / max(full.sum(), 1e-12))))
    mask = full[:, :, z] > 0.05
    rows_, cols_ = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = (slice(rows_.min(), rows_.max() + 1), slice(cols_.min(), cols_.max() + 1)) if mask.any() else (slice(None),) * 2
    fig, axes = plt.subplots(1, len(levels), figsize=(1.9 * len(levels) + 0.6, 2.3), squeeze=False)
    for ax, v in zip(axes[0], levels):
        im = ax.imshow(np.rot90(vols[v][:, :, z][box]), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{float(v):g} %", fontsize=9)
        ax.axis("off")
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.02, label="normalised uptake")
    return save_figure(fig, out, int(style.get("dpi", 150)))
