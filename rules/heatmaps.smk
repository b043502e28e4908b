# Heatmaps of the trained runs (braindl.heatmaps: captum), their group maps and figures, and
# their aggregation over an atlas with robustness across runs and localisation against the
# synthetic ground truth (braindl.atlas). A heatmap job computes the trained runs of a unit and method that
# heatmaps.job_runs gives it: all of them (the default), a split's, or one.


include: "common/heatmaps.smk"


rule heatmap:
    input:
        unpack(heat_source),
    output:
        **heatmap_outputs(),
    params:
        spec=lambda wc: HM_SPECS[wc.method],
        settings=heat_settings,
        layout=heat_layout,
        code=script_code("heatmap.py"),
    log:
        f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}{HEAT_JOB_LABEL}_method-{{method}}.log",
    threads: TRAIN_THREADS
    conda:
        ENV
    resources:
        **TRAIN_RESOURCES,
        heatmap_batch=HM["batch_size"],
        occlusion_batch=HM["occlusion_batch"],
    script:
        "../workflow_scripts/heatmap.py"


# what summarises a unit's maps by one method, in one job: its group maps and its atlas region tables
rule heatmap_summary:
    input:
        runs=heat_run_files,
        pack=lambda wc: pack_paths(wc.reg, wc.mod)["volumes"],
        pack_index=lambda wc: pack_paths(wc.reg, wc.mod)["index"],
        pack_json=lambda wc: pack_paths(wc.reg, wc.mod)["json"],
        atlas=atlas_files(),
    output:
        **heat_group_paths(),
        regions=heat_region_paths()["regions"],
        summary=captioned(heat_region_paths()["summary"], "heatmap_regions_table", "Heatmaps",
                          "{hmodel} {task} {mod} {reg}"),
    params:
        runs=heat_runs,
        target=HM["target_class"],
        control=HM["control_class"],
        atlas=atlas_settings(),
        convention=lambda wc: architectures.ATLAS_CONVENTION[HM_SPECS[wc.method]["method"]],
        code=script_code("heatmap_summary.py"),
    group:
        "heatmap_summary"
    log:
        f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_method-{{method}}_summary.log",
    conda:
        ENV
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/heatmap_summary.py"


# the figures of a method's summaries, in one job: the display mosaic and stat map of its group map, and
# its top regions (figure settings rerun only these)
rule heatmap_figures:
    input:
        **{k: v for k, v in heat_group_paths().items() if k in ("groups", "groups_tsv", "meanbrain")},
        summary=heat_region_paths()["summary"],
    output:
        **{kind: captioned(heat_figure(kind, method="{method}"), f"heatmap_{kind}", "Heatmaps",
                           "{hmodel} {task} {mod} {reg}") for kind in ("display", "statmap", "regions")},
    params:
        group=HM["display_group"],
        top=ATLAS["top_regions"],
        titles=lambda wc: {
            "maps": f"{wc.hmodel} {wc.method}: mean heatmap of {HM['display_group']} ({wc.task}, {wc.mod}, {wc.reg})",
            "regions": (f"{wc.hmodel} {wc.method}: regions of {HM['target_class']} vs {HM['control_class']} "
                        f"({wc.task}, {wc.mod}, {wc.reg}; {_atlas_label()})"),
        },
        dpi=config["figures"]["dpi"],
        code=script_code("heatmap_figures.py"),
    log:
        f"{HEAT}/logs/task-{{task}}_{{mod}}_desc-{{reg}}_model-{{hmodel}}_method-{{method}}_figures.log",
    conda:
        ENV
    script:
        "../workflow_scripts/heatmap_figures.py"


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
