# Heatmaps of the trained runs (braindl.heatmaps: captum), their group maps and figures, and
# their aggregation over an atlas with robustness across runs and localisation against the
# synthetic ground truth (braindl.atlas). One heatmap job per trained run and method.

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
    return f"{HEAT}/task-{task}/{mod}/desc-{reg}/model-{model}/task-{task}_{mod}_desc-{reg}_model-{model}"


def heatmap_paths(task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", split="{split}", run="{run}",
                  method="{method}"):
    pre = f"{_heat_pre(task, mod, reg, model)}_split-{split}_run-{run}_method-{method}"
    return {"heatmaps": f"{pre}_heatmaps.nii.gz", "index": f"{pre}_heatmaps.tsv", "json": f"{pre}_heatmaps.json"}


def heat_group_paths(task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", method="{method}"):
    pre = f"{_heat_pre(task, mod, reg, model)}_method-{method}"
    return {"groups": f"{pre}_groupmaps.nii.gz", "groups_tsv": f"{pre}_groupmaps.tsv",
            "runs": f"{pre}_runmaps.nii.gz", "runs_tsv": f"{pre}_runmaps.tsv", "meanbrain": f"{pre}_meanbrain.nii.gz"}


def heat_region_paths(task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", method="{method}"):
    pre = f"{_heat_pre(task, mod, reg, model)}_method-{method}_atlas-{_atlas_label()}"
    return {"regions": f"{pre}_regions.tsv", "summary": f"{pre}_regionsummary.tsv"}


def _atlas_label():
    return "custom" if ATLAS["image"] else ATLAS["name"]


def heat_table(kind, task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}"):
    """Robustness (pairs, summary) and ground-truth tables over the methods of one model."""
    return f"{_heat_pre(task, mod, reg, model)}_atlas-{_atlas_label()}_{kind}.tsv"


def heat_figure(kind, task="{task}", mod="{mod}", reg="{reg}", model="{hmodel}", method=None):
    m = "" if method is None else f"_method-{method}"
    return f"{FIGURES}/heatmaps_task-{task}_{mod}_desc-{reg}_model-{model}{m}_{kind}.{config['figures']['format']}"


def unit_runs(task, mod, reg, model, method):
    """Every run of one heatmap unit and method: split, run and its heatmap files."""
    return [dict(split=s, run=r, **heatmap_paths(task, mod, reg, model, s, r, method))
            for s in SPLIT_IDS for r in RUN_IDS]


def heat_runs(wc):
    return unit_runs(wc.task, wc.mod, wc.reg, wc.hmodel, wc.method)


def heat_run_files(wc):
    return [f for r in heat_runs(wc) for f in (r["heatmaps"], r["index"])]


def heat_source(wc):
    """The trained run and the data a heatmap job reads."""
    if wc.hmodel == TRAIN_MODEL:
        run = train_paths(wc.task, wc.mod, wc.reg, wc.split, wc.run)
        data = {"data": pack_paths(wc.reg, wc.mod)["volumes"], "index": pack_paths(wc.reg, wc.mod)["index"]}
    else:
        run = arm_paths(wc.task, wc.hmodel, wc.split, wc.run)
        data = {k: v for k, v in arm_files(wc.task, wc.hmodel, wc.split).items() if k != "split"}
    return {"model": run["model"], "predictions": run["predictions"], **data,
            "pack_json": pack_paths(wc.reg, wc.mod)["json"]}


def heat_layout(wc):
    """Mosaic layout of a 2D model (None for volumes)."""
    if wc.hmodel == TRAIN_MODEL or ARMS[wc.hmodel]["input"] != "mosaic":
        return None
    return canonical(LAYOUTS[ARMS[wc.hmodel]["layout"]])


def heat_settings(wc):
    """What one heatmap job reads from `heatmaps`: the disease class and its method's settings (occlusion
    patch and stride of volumes or of mosaics; the Grad-CAM layer), so that a setting reruns only the
    heatmaps it changes. The batch sizes change no map: the rule passes them as resources."""
    out = {"target_class": HM["target_class"], "device": config["training"]["device"]}
    method = HM_SPECS[wc.method]["method"]
    if method == "occlusion":
        keys = ("occlusion_patch_2d", "occlusion_stride_2d") if heat_layout(wc) else ("occlusion_patch", "occlusion_stride")
        out.update({k: HM[k] for k in keys})
    elif method == "occlusion_slice":
        out.update(occlusion_slice_window=HM["occlusion_slice_window"], occlusion_slice_stride=HM["occlusion_slice_stride"])
    elif method == "gradcam":
        out["gradcam_layer"] = HM["gradcam_layer"]
    return canonical(out)


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


rule heatmap:
    input:
        unpack(heat_source),
    output:
        **heatmap_paths(),
    params:
        spec=lambda wc: HM_SPECS[wc.method],
        settings=heat_settings,
        layout=heat_layout,
        code=script_code("heatmap.py"),
    log:
        f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_split-{{split}}_run-{{run}}_method-{{method}}.log",
    threads: TRAIN_THREADS
    conda:
        ENV
    resources:
        **TRAIN_RESOURCES,
        heatmap_batch=HM["batch_size"],
        occlusion_batch=HM["occlusion_batch"],
    script:
        "../workflow_scripts/heatmap.py"


rule heatmap_groups:
    input:
        runs=heat_run_files,
        pack=lambda wc: pack_paths(wc.reg, wc.mod)["volumes"],
        pack_index=lambda wc: pack_paths(wc.reg, wc.mod)["index"],
        pack_json=lambda wc: pack_paths(wc.reg, wc.mod)["json"],
    output:
        **heat_group_paths(),
    params:
        runs=heat_runs,
        target=HM["target_class"],
        control=HM["control_class"],
        code=script_code("heatmap_groups.py"),
    group:
        "heatmap_summary"
    log:
        f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_method-{{method}}_groups.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/heatmap_groups.py"


rule heatmap_regions:
    input:
        runs=heat_run_files,
        pack_json=lambda wc: pack_paths(wc.reg, wc.mod)["json"],
        atlas=atlas_files(),
    output:
        regions=heat_region_paths()["regions"],
        summary=captioned(heat_region_paths()["summary"], "heatmap_regions_table", "Heatmaps",
                          "{hmodel} {task} {mod} {reg}"),
    params:
        runs=heat_runs,
        target=HM["target_class"],
        control=HM["control_class"],
        atlas=atlas_settings(),
        convention=lambda wc: architectures.ATLAS_CONVENTION[HM_SPECS[wc.method]["method"]],
        code=script_code("heatmap_regions.py"),
    group:
        "heatmap_summary"
    log:
        f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_method-{{method}}_regions.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/heatmap_regions.py"


for _kind in ("display", "statmap"):

    rule:
        name:
            f"heatmap_figure_{_kind}"
        input:
            **{k: v for k, v in heat_group_paths().items() if k in ("groups", "groups_tsv", "meanbrain")},
        output:
            captioned(heat_figure(_kind, method="{method}"), f"heatmap_{_kind}", "Heatmaps", "{hmodel} {task} {mod} {reg}"),
        params:
            kind=_kind,
            group=HM["display_group"],
            title=lambda wc: f"{wc.hmodel} {wc.method}: mean heatmap of {HM['display_group']} ({wc.task}, {wc.mod}, {wc.reg})",
            dpi=config["figures"]["dpi"],
            code=script_code("heatmap_figure.py"),
        log:
            f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_method-{{method}}_{_kind}.log",
        conda:
            ENV
        script:
            "../workflow_scripts/heatmap_figure.py"


rule heatmap_figure_regions:
    input:
        heat_region_paths()["summary"],
    output:
        captioned(heat_figure("regions", method="{method}"), "heatmap_regions", "Heatmaps", "{hmodel} {task} {mod} {reg}"),
    params:
        top=ATLAS["top_regions"],
        title=lambda wc: (f"{wc.hmodel} {wc.method}: regions of {HM['target_class']} vs {HM['control_class']} "
                          f"({wc.task}, {wc.mod}, {wc.reg}; {_atlas_label()})"),
        dpi=config["figures"]["dpi"],
        code=script_code("heatmap_regions_figure.py"),
    log:
        f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_method-{{method}}_regionfigure.log",
    conda:
        ENV
    script:
        "../workflow_scripts/heatmap_regions_figure.py"


rule heatmap_robustness:
    input:
        lambda wc: [f for files in robustness_inputs(wc).values() for f in files.values()],
    output:
        pairs=heat_table("robustness"),
        summary=captioned(heat_table("robustnesssummary"), "heatmap_robustness", "Heatmaps", "{hmodel} {task} {mod} {reg}"),
    params:
        methods=robustness_inputs,
        top=ATLAS["robustness_top"],
        code=script_code("heatmap_robustness.py"),
    log:
        f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_robustness.log",
    conda:
        ENV
    script:
        "../workflow_scripts/heatmap_robustness.py"


rule heatmap_figure_robustness:
    input:
        heat_table("robustnesssummary"),
    output:
        captioned(heat_figure("robustness"), "heatmap_robustness", "Heatmaps", "{hmodel} {task} {mod} {reg}"),
    params:
        title=lambda wc: f"{wc.hmodel}: robustness of the heatmaps across runs ({wc.task}, {wc.mod}, {wc.reg})",
        dpi=config["figures"]["dpi"],
        code=script_code("heatmap_robustness_figure.py"),
    log:
        f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_robustnessfigure.log",
    conda:
        ENV
    script:
        "../workflow_scripts/heatmap_robustness_figure.py"


if SYNTHETIC:

    rule heatmap_groundtruth:
        input:
            runs=lambda wc: [r[k] for m in heat_methods(wc.hmodel)
                             for r in unit_runs(wc.task, wc.mod, wc.reg, wc.hmodel, m) for k in ("heatmaps", "index")],
            summaries=lambda wc: [heat_region_paths(wc.task, wc.mod, wc.reg, wc.hmodel, m)["summary"]
                                  for m in heat_methods(wc.hmodel)],
            mask=lambda wc: truth_mask(wc.mod),
            pack_json=lambda wc: pack_paths(wc.reg, wc.mod)["json"],
            atlas=atlas_files(),
        output:
            table=captioned(heat_table("groundtruth"), "heatmap_groundtruth", "Heatmaps", "{hmodel} {task} {mod} {reg}"),
            figure=captioned(heat_figure("localisation"), "heatmap_localisation", "Heatmaps",
                             "{hmodel} {task} {mod} {reg}"),
        params:
            methods=lambda wc: {m: {"runs": unit_runs(wc.task, wc.mod, wc.reg, wc.hmodel, m),
                                    "summary": heat_region_paths(wc.task, wc.mod, wc.reg, wc.hmodel, m)["summary"],
                                    "convention": architectures.ATLAS_CONVENTION[HM_SPECS[m]["method"]]}
                                for m in heat_methods(wc.hmodel)},
            target=HM["target_class"],
            atlas=atlas_settings(),
            dpi=config["figures"]["dpi"],
            code=script_code("heatmap_groundtruth.py"),
        group:
            "heatmap_summary"
        log:
            f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_groundtruth.log",
        conda:
            ENV
        script:
            "../workflow_scripts/heatmap_groundtruth.py"
