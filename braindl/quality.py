"""PET image-quality regression on patches of the dose reconstructions (002).

- :func:`extract_patches`: random 2D patches from the three planes of a
  reconstruction, background patches (mean below ``background_fraction`` of
  the volume mean) rejected, a fixed number kept per plane.
- Quality labels: three clinical scores per reconstruction (global quality
  rating ``gqr``, pattern recognition ``pr``, diagnostic confidence ``dc``;
  0 to 3 in steps of 0.5). Real users provide them (:func:`read_scores`); for
  the synthetic cohort :func:`synthetic_scores` derives them by
  :data:`SCORE_RULE` from the count level's quality group and a measured
  image-quality index (SSIM against the full-count reconstruction).
- :func:`quality_folds`: fixed test patients, leave-``n``-patients-out
  validation folds, nested training pools.
- :func:`train_quality`: a 2D backbone with a flatten + linear head of three
  outputs, MSE, Adam; the loop of :func:`braindl.training.fit` (best epoch
  on validation loss, checkpoints, resume).
- Tables and the figures of 002 (Fig. 1, 5 and 8).
"""

from __future__ import annotations

import json
import math
import time
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from torch import nn

from braindl import backbones, models, training
from braindl.dose import DoseError, level_label
from braindl.io import atomic_path, write_json, write_tsv

METRICS = ("gqr", "pr", "dc")
METRIC_NAMES = {"gqr": "global quality rating", "pr": "pattern recognition", "dc": "diagnostic confidence"}
PLANES = ("sagittal", "coronal", "axial")
# Synthetic labels: score = 3 * (w_group * g + w_index * q), rounded to 0.5, where g is the rank of the
# level's quality group scaled to [0, 1] (low 0, medium 0.5, high 1) and q the SSIM of the reconstruction
# against the full-count one. GQR is dominated by noise (the index), pattern recognition by the count
# level; diagnostic confidence weighs both equally.
SCORE_RULE = {"gqr": (0.3, 0.7), "pr": (0.7, 0.3), "dc": (0.5, 0.5)}


def half_round(x) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, dtype=float) * 2.0) / 2.0, 0.0, 3.0)


# ---- patches ------------------------------------------------------------------------------------------
def extract_patches(vol: np.ndarray, size: int, candidates: int, keep: int, background_fraction: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """Patches ``(n, size, size)`` and their plane index (0 sagittal, 1 coronal, 2 axial).

    Per plane ``candidates`` patches at random positions (a random slice, a
    random corner); those with a mean below ``background_fraction`` x the
    volume mean are background; ``keep`` of the others are drawn at random
    (all of them when fewer). Volumes smaller than ``size`` are zero padded.
    """
    vol = np.asarray(vol, dtype=np.float32)
    threshold = float(background_fraction) * float(vol.mean())
    pad = [(0, max(0, size - s)) for s in vol.shape]
    v = np.pad(vol, pad)
    out, planes, stats = [], [], {}
    for axis, name in enumerate(PLANES):
        plane_axes = [a for a in range(3) if a != axis]
        h, w = v.shape[plane_axes[0]], v.shape[plane_axes[1]]
        k = rng.integers(0, v.shape[axis], candidates)
        i = rng.integers(0, h - size + 1, candidates)
        j = rng.integers(0, w - size + 1, candidates)
        moved = np.moveaxis(v, axis, 0)
        cand = np.stack([moved[kk, ii:ii + size, jj:jj + size] for kk, ii, jj in zip(k, i, j)])
        fg = np.flatnonzero(cand.mean((1, 2)) >= threshold)
        pick = rng.choice(fg, size=min(keep, len(fg)), replace=False) if len(fg) else fg
        out.append(cand[np.sort(pick)])
        planes += [axis] * len(pick)
        stats[name] = {"candidates": int(candidates), "foreground": int(len(fg)), "kept": int(len(pick))}
    patches = np.concatenate(out) if out else np.zeros((0, size, size), np.float32)
    return patches, np.asarray(planes, dtype=np.int8), stats


def run_patches(recon_nii, settings: dict, seed: int, out_npy, out_json) -> dict:
    """Patches of one reconstruction: ``out_npy`` ``(n, size, size)`` float16, planes in the JSON."""
    vol = np.asarray(nib.load(str(recon_nii)).dataobj, dtype=np.float32)
    rng = np.random.default_rng(seed)
    patches, planes, stats = extract_patches(vol, int(settings["patch_size"]), int(settings["candidates_per_plane"]),
                                             int(settings["patches_per_plane"]),
                                             float(settings["background_fraction"]), rng)
    if len(patches) == 0:
        raise DoseError(f"{recon_nii}: no patch of {settings['patch_size']} voxels passed the background "
                        f"threshold ({settings['background_fraction']} x volume mean)")
    with atomic_path(out_npy) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, patches.astype(np.float16))
    meta = {"Source": str(recon_nii), "PatchSize": int(settings["patch_size"]), "Planes": planes.tolist(),
            "PlaneNames": list(PLANES), "PerPlane": stats, "Seed": int(seed)}
    write_json(out_json, meta)
    return meta


# ---- labels -------------------------------------------------------------------------------------------
def group_of(levels, groups: dict) -> dict[float, str]:
    """Map each count level to its quality group; every level must be in exactly one group."""
    out = {}
    for name, members in groups.items():
        for m in members:
            if float(m) in out:
                raise DoseError(f"config: dose level {m} is in two groups ({out[float(m)]}, {name})")
            out[float(m)] = name
    missing = [v for v in levels if float(v) not in out]
    if missing:
        raise DoseError(f"config: dose levels {missing} belong to no group of dose.groups")
    empty = [g for g, members in groups.items() if not any(float(m) in map(float, levels) for m in members)]
    if empty:
        raise DoseError(f"config: dose.groups {empty} have none of the configured dose.levels")
    return out


def scored_levels(participant: str, levels, groups: dict, seed: int) -> list[float]:
    """The levels scored for one patient: one level per group, drawn at random (002: 3 of 7)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(participant.encode())])
    levels = [float(v) for v in levels]
    out = []
    for members in groups.values():
        present = [float(m) for m in members if float(m) in levels]
        out.append(float(rng.choice(present)))
    return sorted(out)


def quality_index(recon: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of a [0, 1] reconstruction against the full-count one (scikit-image, data range 1)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(recon, np.float64), np.asarray(reference, np.float64),
                                       data_range=1.0))


def synthetic_scores(rows: list[dict], groups: dict, levels) -> pd.DataFrame:
    """Scores by :data:`SCORE_RULE` for ``rows`` of ``participant_id, session_id, level, recon, reference``."""
    order = list(groups)
    g_of = group_of(levels, groups)
    out = []
    for r in rows:
        q = quality_index(nib.load(str(r["recon"])).get_fdata(), nib.load(str(r["reference"])).get_fdata())
        group = g_of[float(r["level"])]
        g = order.index(group) / max(len(order) - 1, 1)
        scores = {m: float(half_round(3.0 * (wg * g + wq * q))) for m, (wg, wq) in SCORE_RULE.items()}
        out.append({"participant_id": r["participant_id"], "session_id": r["session_id"],
                    "level": float(r["level"]), "group": group, "ssim": round(q, 4), **scores})
    return pd.DataFrame(out)


def run_synthetic_scores(rows: list[dict], groups: dict, levels, out_tsv) -> None:
    write_tsv(out_tsv, synthetic_scores(rows, groups, levels))


def read_scores(path, levels) -> pd.DataFrame:
    """A user's scores table: ``participant_id, session_id, level`` (percent) and ``gqr, pr, dc``."""
    path = Path(path)
    if not path.is_file():
        raise DoseError(f"{path}: dose scores table not found")
    t = pd.read_csv(path, sep="\t", dtype={"participant_id": str, "session_id": str})
    missing = [c for c in ("participant_id", "session_id", "level", *METRICS) if c not in t.columns]
    if missing:
        raise DoseError(f"{path}: missing columns {missing}")
    bad = t[~t["level"].astype(float).isin([float(v) for v in levels])]
    if len(bad):
        raise DoseError(f"{path}: levels {sorted(set(bad['level']))} are not among dose.levels {list(levels)}")
    for m in METRICS:
        v = pd.to_numeric(t[m], errors="coerce")
        if v.isna().any() or ((v < 0) | (v > 3) | (v * 2 != np.round(v * 2))).any():
            raise DoseError(f"{path}: column {m} must hold scores 0 to 3 in steps of 0.5")
    dup = t.duplicated(["participant_id", "session_id", "level"])
    if dup.any():
        raise DoseError(f"{path}: duplicate rows {t[dup][['participant_id', 'session_id', 'level']].values.tolist()}")
    return t.assign(level=t["level"].astype(float))


# ---- folds and training -------------------------------------------------------------------------------
def quality_folds(patients: list[str], n_test: int, n_validation: int, n_folds: int, seed: int) -> list[dict]:
    """Fixed test patients and leave-``n_validation``-out folds over the rest.

    The patients are shuffled once (``seed``); the first ``n_test`` are the
    test set of every fold; fold ``k`` validates on the ``n_validation``
    patients from position ``k * n_validation`` of the rest (wrapping) and its
    training pool is the others in shuffled order, so a training set of ``n``
    patients is the pool's first ``n`` (nested sizes).
    """
    ids = list(np.random.default_rng(seed).permutation(sorted(patients)))
    test, rest = ids[:n_test], ids[n_test:]
    if len(rest) < n_validation + 1:
        raise DoseError(f"dose: {len(patients)} patients leave {len(rest)} after {n_test} test patients; "
                        f"need {n_validation} for validation and at least one for training")
    folds = []
    for k in range(n_folds):
        val = [rest[(k * n_validation + i) % len(rest)] for i in range(n_validation)]
        folds.append({"fold": k, "test": test, "validation": val, "pool": [p for p in rest if p not in val]})
    return folds


class PatchRunner(training.Runner):
    """A 2D backbone regressing the three scores from patches; the interface of :class:`training.Runner`."""

    def __init__(self, x: dict, y: dict, settings: dict, device, seed: int):
        self.s, self.device = settings, device
        self.regression, self.mosaic = True, False
        self.x = {k: torch.from_numpy(np.asarray(v, dtype=np.float32))[:, None].to(device) for k, v in x.items()}
        self.y = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)).to(device) for k, v in y.items()}
        self.loss_fn = nn.MSELoss()
        torch.manual_seed(seed)
        self.arch = {"head": "linear", "rgb": bool(settings.get("rgb", True))}
        self.model = backbones.build_2d(settings["model"], len(METRICS), **self.arch).to(device)
        self.weights = None
        if str(settings.get("weights", "none")) != "none":
            self.weights = str(backbones.load_imagenet(self.model, settings["model"], settings["weights"]))
        self.trainable = models.freeze(self.model, settings["freeze"])
        self.opt = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad],
                                    lr=float(settings["learning_rate"]))
        gen_dev = "cuda" if device.type == "cuda" else "cpu"
        self.shuffle_gen = torch.Generator().manual_seed(seed)
        self.aug_gen = torch.Generator(device=gen_dev).manual_seed(seed + 1)
        self.amp = device.type == "cuda"

    def _forward(self, xb):
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(xb.float())
        return out.float()

    def _batch(self, idx):
        return self.x["train"][idx]

    @torch.no_grad()
    def predict(self, which: str) -> tuple[float, np.ndarray]:
        self.model.eval()
        bs = int(self.s["batch_size"])
        x = self.x[which]
        out = torch.cat([self._forward(x[i:i + bs]) for i in range(0, x.shape[0], bs)])
        return float(self.loss_fn(out, self.y[which])), out.cpu().numpy()

    def score(self, which: str) -> dict:
        loss, out = self.predict(which)
        return {f"{which}_loss": loss, f"{which}_mae": float(np.abs(out - self.y[which].cpu().numpy()).mean())}


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
                  state_dir, threads: int | None = None, log=None) -> dict:
    """Train one quality regressor on the first ``n_train`` patients of the fold's pool.

    ``settings``: ``model``, ``freeze``, ``weights``, ``learning_rate``,
    ``batch_size``, ``max_epochs``, ``early_stopping_patience``, ``seed``,
    ``device``. Writes ``out``: predictions (validation + test, one row per
    patch), history and a summary JSON with the test MAE (per patch and per
    reconstruction, overall and per score).
    """
    log = log or training._progress
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
    runner = PatchRunner({k: v[0] for k, v in data.items()}, {k: v[1] for k, v in data.items()}, settings, dev, seed)
    total = sum(p.numel() for p in runner.model.parameters())
    log(f"{settings['model']} on {dev}: {runner.trainable:,} of {total:,} parameters trainable "
        f"(freeze {settings['freeze']}); {n_train} training patients, {len(data['train'][0])} patches")
    digest = training.settings_digest({**settings, "fold": fold, "n_train": n_train, "run": run})
    history, _, best_epoch, _ = training.fit(runner, settings, "validation_loss", -1, digest, state_dir, log,
                                             label=f"fold {fold['fold']} n {n_train} run {run}")
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
    import shutil

    shutil.rmtree(state_dir, ignore_errors=True)
    return summary


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


def sizes_figure(table_tsv, out, style: dict) -> None:
    """002 Fig. 5: test MAE against the number of training patients, one panel per backbone
    (boxes over folds, one colour per freezing regime), with the 0.5 label-noise and 1.3 chance lines."""
    from braindl.figures import _save

    plt = _plt()
    t = pd.read_csv(table_tsv, sep="\t")
    t = t[(t["kind"] == "run") & (t["run"] == 0)]
    names = sorted(t["model"].unique())
    cols = min(len(names), 4)
    fig, axes = plt.subplots(math.ceil(len(names) / cols), cols, figsize=(3.2 * cols, 2.8 * math.ceil(len(names) / cols)),
                             squeeze=False, sharey=True)
    regimes = sorted(t["freeze"].unique())
    for ax, name in zip(axes.ravel(), names):
        d = t[t["model"] == name]
        sizes = sorted(d["n_train"].unique())
        for k, reg in enumerate(regimes):
            data = [d[(d["n_train"] == n) & (d["freeze"] == reg)]["mae"].to_numpy() for n in sizes]
            pos = np.arange(len(sizes)) + (k - (len(regimes) - 1) / 2) * 0.3
            bp = ax.boxplot(data, positions=pos, widths=0.25, patch_artist=True)
            for b in bp["boxes"]:
                b.set_facecolor(f"C{k}")
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
    _save(fig, out, int(style.get("dpi", 150)))


def regimes_figure(table_tsv, out, style: dict) -> None:
    """002 Fig. 8: test MAE per backbone with only the head trained vs the first 60 % frozen
    (largest training set, mean +- SE over folds), trainable parameters annotated."""
    from braindl.figures import _save

    plt = _plt()
    t = pd.read_csv(table_tsv, sep="\t")
    t = t[(t["kind"] == "run") & (t["run"] == 0)]
    t = t[t["n_train"] == t["n_train"].max()]
    names = sorted(t["model"].unique())
    regimes = sorted(t["freeze"].unique())
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(names) + 2), 3.4))
    width = 0.8 / len(regimes)
    for k, reg in enumerate(regimes):
        g = t[t["freeze"] == reg].groupby("model")
        mean, se = g["mae"].mean().reindex(names), (g["mae"].std(ddof=1) / np.sqrt(g["mae"].count())).reindex(names)
        x = np.arange(len(names)) + (k - (len(regimes) - 1) / 2) * width
        bars = ax.bar(x, mean.to_numpy(), width, yerr=np.nan_to_num(se.to_numpy()), capsize=2,
                      color=str(0.35 + 0.4 * k / max(len(regimes) - 1, 1)), label=reg)
        params = g["trainable_parameters"].first().reindex(names)
        for b, p in zip(bars, params):
            ax.annotate(f"{int(p):,}", (b.get_x() + b.get_width() / 2, b.get_height()), fontsize=6,
                        ha="center", va="bottom", rotation=90, xytext=(0, 3), textcoords="offset points")
    ax.axhline(0.5, ls="--", color="C1", lw=0.8)
    ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel(f"test MAE ({int(t['n_train'].max())} training patients)")
    ax.legend(fontsize=7, title="frozen", title_fontsize=7)
    _save(fig, out, int(style.get("dpi", 150)))


def levels_figure(recons: dict, out, style: dict) -> None:
    """002 Fig. 1: the same axial slice (through the activity's centre) at every count level."""
    from braindl.figures import _save

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
    _save(fig, out, int(style.get("dpi", 150)))
