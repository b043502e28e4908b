# The heatmaps stage's constants, paths, settings, checks and input functions (its rules: rules/heatmaps.smk).
# ---- heatmaps and atlas aggregation -------------------------------------------------------------
HEAT = f"{RESULTS}/heatmaps"
HM = config["heatmaps"]
ATLAS = config["atlas"]
TRAIN_MODEL = config["training"]["model"]
HM_SPECS = architectures.method_specs(HM["methods"], HM)


def _heat_units():
    """(task, modality, variant, model) whose runs get heatmaps (braindl.planning.heatmap_units)."""
    for problem in planning.heatmap_problems(config):
        raise WorkflowError(f"config: {problem}")
    return planning.heatmap_units(config)


HEAT_UNITS = _heat_units()


def heat_network(model):
    """The network behind a heatmap ``model`` label (training.model, or a transfer model's)."""
    return planning.heatmap_network(config, model)


@functools.cache
def heat_methods(model):
    """Method labels that apply to ``model``'s network (braindl.planning.heatmap_methods)."""
    return planning.heatmap_methods(config, model)


_skipped = sorted({f"{heat_network(u[3])}: {architectures.heatmap_refusal(heat_network(u[3]), s['method'])}"
                   for u in HEAT_UNITS for s in HM_SPECS.values()
                   if architectures.heatmap_refusal(heat_network(u[3]), s["method"])})
for _why in _skipped:
    print(f"heatmaps: left out for {_why}", file=sys.stderr)


wildcard_constraints:
    method="|".join(HM_SPECS) or "no-method",
    hmodel="|".join(sorted({TRAIN_MODEL, *ARMS})),


def _heat_pre(task, mod, reg, model):
    return derivatives.heatmap_unit(RESULTS, task, mod, reg, model)


def heatmap_paths(task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", split="{split}", run="{run}",
                  method="{method}"):
    return derivatives.heatmap_files(_heat_pre(task, mod, reg, model), split, run, method)


def heat_group_paths(task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", method="{method}"):
    return derivatives.heatmap_groups(_heat_pre(task, mod, reg, model), method)


def heat_region_paths(task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", method="{method}"):
    return derivatives.heatmap_regions(_heat_pre(task, mod, reg, model), method, _atlas_label())


def _atlas_label():
    return "custom" if ATLAS["image"] else ATLAS["name"]


def heat_table(kind, task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}"):
    """Robustness (pairs, summary) and ground-truth tables over the methods of one model."""
    return derivatives.heatmap_table(_heat_pre(task, mod, reg, model), _atlas_label(), kind)


def heat_figure(kind, task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", method=None):
    return derivatives.heatmap_figure(RESULTS, task, mod, reg, model, kind, config["figures"]["format"], method)


def unit_runs(task, mod, reg, model, method):
    """Every run of one heatmap unit and method: split, run and its heatmap files."""
    return [dict(split=s, run=r, **heatmap_paths(task, mod, reg, model, s, r, method)) for s, r in RUN_KEYS]


def heat_runs(wc):
    return unit_runs(wc.task, wc.mod, wc.reg, wc.hmodel, wc.method)


def heat_run_files(wc):
    return [f for r in heat_runs(wc) for f in (r["heatmaps"], r["index"])]


def heatmap_outputs():
    """Rule heatmap's outputs: each of a run's heatmap files, listed over the job's runs."""
    return over_job_runs(lambda s, r: heatmap_paths(split=s, run=r))


def _heat_source(wc, split, run):
    if wc.hmodel == TRAIN_MODEL:
        files = train_paths(wc.task, wc.mod, wc.reg, split, run)
        data = {"data": pack_paths(wc.reg, wc.mod)["volumes"], "index": pack_paths(wc.reg, wc.mod)["index"]}
    else:
        files = arm_paths(wc.task, wc.hmodel, split, run)
        data = arm_data(wc.hmodel)
    return {"model": files["model"], "predictions": files["predictions"], **data}


def heat_source(wc):
    """The trained runs and the data a heatmap job reads: lists over the job's runs, and the pack's sidecar."""
    return {**over_job_runs(lambda s, r: _heat_source(wc, s, r), wc), "pack_json": pack_paths(wc.reg, wc.mod)["json"]}


def heat_layout(wc):
    """Mosaic layout of a 2D model (None for volumes)."""
    if wc.hmodel == TRAIN_MODEL or ARMS[wc.hmodel]["input"] != "mosaic":
        return None
    return canonical(LAYOUTS[ARMS[wc.hmodel]["layout"]])


def heat_settings(wc):
    """What one heatmap job reads from `heatmaps` (braindl.planning.heatmap_settings)."""
    return canonical(planning.heatmap_settings(config, wc.hmodel, wc.method))


def robustness_inputs(wc):
    """Per method of one unit: its runs' mean disease maps (and their table) and its per-run regions."""
    out = {}
    for m in heat_methods(wc.hmodel):
        groups = heat_group_paths(wc.task, wc.mod, wc.reg, wc.hmodel, m)
        out[m] = {"runs": groups["runs"], "runs_tsv": groups["runs_tsv"],
                  "regions": heat_region_paths(wc.task, wc.mod, wc.reg, wc.hmodel, m)["regions"]}
    return out


def atlas_settings():
    return canonical({k: ATLAS[k] for k in ("name", "image", "labels", "merge_hemispheres")})


def atlas_files():
    return [ATLAS["image"], ATLAS["labels"]] if ATLAS["image"] else []


def truth_mask(mod):
    """Template-space mask of the regions the target class alters in ``mod`` (synthetic cohort)."""
    effect = "atrophy" if mod == "T1w" else "hypometabolism"
    return f"{TRUTH_DIR}/tpl-{synthetic.SPACE}_dx-{HM['target_class']}_desc-{effect}_mask.nii.gz"


def heatmap_targets():
    files = []
    for task, mod, reg, model in HEAT_UNITS:
        methods = heat_methods(model)
        for method in methods:
            files += list(heat_region_paths(task, mod, reg, model, method).values())
            files += [heat_figure(k, task, mod, reg, model, method) for k in ("display", "statmap", "regions")]
        if methods:
            files += [heat_table(k, task, mod, reg, model) for k in ("robustness", "robustnesssummary")]
            files.append(heat_figure("robustness", task, mod, reg, model))
            if SYNTHETIC:
                files += [heat_table("groundtruth", task, mod, reg, model), heat_figure("localisation", task, mod, reg, model)]
    return files
