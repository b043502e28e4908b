# 002's dose branch (braindl.dose, braindl.patches, braindl.quality): list-mode-style count resampling of
# PET and OSEM per count level (one job per scan), patches of the reconstructions, quality labels, and
# the quality regression across 2D backbones with its tables and figures.


include: "common/dose.smk"


wildcard_constraints:
    level="[0-9p]+",
    freeze="none|head_only|first_60_percent",


# one job per scan: the counts of every level (simulated from the PET, or thinned from the user's events:
# seeded, so the same draws whenever the job reruns) and every level's reconstruction, in one process
rule dose_reconstruct:
    input:
        scan=dose_source,
        listed=session_scans_path(),
        manifest=ancient(MANIFEST),
    output:
        **dose_counts_paths(),
        **{f"{kind}_{lv}": path for lv in DOSE_LABELS for kind, path in dose_recon_paths(level=lv).items()},
    params:
        resample=canonical(planning.dose_step_settings(DCFG, "resample")),
        settings=canonical(planning.dose_step_settings(DCFG, "reconstruct")),
        levels=DOSE_LABELS,
        # null: the PET sidecar's TotalCounts, read by the job (the synthetic sidecars do not exist yet)
        total_counts=DCFG["total_counts"],
        seed=lambda wc: dose_seed(wc.subject, wc.session),
        device=DCFG["device"],
        code=script_code("dose_reconstruct.py"),
    group:
        "dose_scan"
    log:
        f"{DOSE}/logs/sub-{{subject}}_ses-{{session}}_reconstruct.log",
    # one core without a profile (the profiles set more): a job that needs both cores of a 2-core machine
    # waits until every other job there has ended, and leaves a core idle while it waits
    threads: 1
    conda:
        ENV
    resources:
        mem_mb=6000,
    script:
        "../workflow_scripts/dose_reconstruct.py"


# one job per scan: the patches of every level's reconstruction (the regression reads the scored ones; each
# level keeps its own seed)
rule dose_patches:
    input:
        **{f"pet_{lv}": dose_recon_paths(level=lv)["pet"] for lv in DOSE_LABELS},
    output:
        **{f"{kind}_{lv}": path for lv in DOSE_LABELS for kind, path in dose_patch_paths(level=lv).items()},
    params:
        settings=canonical(planning.dose_step_settings(DCFG, "patches")),
        seeds=lambda wc: {lv: dose_seed(wc.subject, wc.session, lv) for lv in DOSE_LABELS},
        code=script_code("dose_patches.py"),
    group:
        "dose_scan"
    log:
        f"{DOSE}/logs/sub-{{subject}}_ses-{{session}}_patches.log",
    conda:
        ENV
    script:
        "../workflow_scripts/dose_patches.py"


rule dose_scores:
    input:
        # a user's scores table, or the reconstructions the synthetic rule measures
        [DCFG["scores"]] if DCFG["scores"] else sorted({f for s, t, lv in dose_scored()
                                                        for f in (dose_recon_paths(s, t, lv)["pet"],
                                                                  dose_recon_paths(s, t, FULL_LEVEL)["pet"])}),
    output:
        captioned(DOSE_SCORES, "dose_scores", "Dose"),
    params:
        rows=[dict(participant_id=f"sub-{s}", session_id=t, level=DOSE_LABELS[lv],
                   recon=dose_recon_paths(s, t, lv)["pet"], reference=dose_recon_paths(s, t, FULL_LEVEL)["pet"])
              for s, t, lv in dose_scored()],
        groups=DCFG["groups"],
        levels=DOSE_LEVELS,
        scores=DCFG["scores"],
        code=script_code("dose_scores.py"),
    log:
        f"{DOSE}/logs/quality_scores.log",
    conda:
        ENV
    script:
        "../workflow_scripts/dose_scores.py"


# the runs of one backbone and regime that resources.training_job_runs gives a job: all of them (the
# default), one training size's folds and runs, or one run
rule dose_train:
    input:
        patches=lambda wc: list(dose_patch_inputs(wc).values()),
        scores=DOSE_SCORES,
    output:
        **dose_job_outputs(),
    params:
        settings=dose_train_settings,
        runs=dose_job_params,
        patch_keys=lambda wc: list(dose_patch_inputs(wc)),
        code=script_code("dose_train.py"),
    log:
        f"{DOSE}/logs/model-{{dmodel}}_freeze-{{freeze}}{DOSE_JOB_LABEL}.log",
    threads: TRAIN_THREADS
    conda:
        ENV
    resources:
        **TRAIN_RESOURCES,
    script:
        "../workflow_scripts/dose_train.py"


rule dose_table:
    input:
        [dose_run_paths(**r)[k] for r in dose_runs() for k in ("predictions", "summary")],
    output:
        captioned(DOSE_TABLE, "dose_table", "Dose"),
    params:
        runs=[dose_run_paths(**r) for r in dose_runs()],
        code=script_code("dose_table.py"),
    log:
        f"{DOSE}/logs/quality_runs.log",
    conda:
        ENV
    script:
        "../workflow_scripts/dose_table.py"


rule dose_figure:
    input:
        table=DOSE_TABLE,
    output:
        captioned(dose_figure("{dkind}"), "dose_figure", "Dose"),
    wildcard_constraints:
        dkind="training_size|freezing",
    params:
        style=canonical(config["figures"]),
        code=script_code("dose_figure.py"),
    log:
        f"{DOSE}/logs/figure_{{dkind}}.log",
    conda:
        ENV
    script:
        "../workflow_scripts/dose_figure.py"


rule dose_figure_levels:
    input:
        [dose_recon_paths(*DOSE_PAIRS[0], lv)["pet"] for lv in DOSE_LABELS] if DOSE_PAIRS else [],
    output:
        captioned(dose_figure("levels"), "dose_levels", "Dose"),
    params:
        levels=list(DOSE_LABELS.values()),
        style=canonical(config["figures"]),
        code=script_code("dose_levels_figure.py"),
    log:
        f"{DOSE}/logs/figure_levels.log",
    conda:
        ENV
    script:
        "../workflow_scripts/dose_levels_figure.py"
