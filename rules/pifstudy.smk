# 004 study 5 (braindl.pifstudy): a VGG-like baseline against its patch-individual-filter (PIF) version,
# each split with the thesis' random hyperparameter search on the validation set, on all and on a
# subset of each split's training participants. A job trains the searches resources.training_job_runs
# gives it, each with all of its samples (braindl.pifstudy.run_searches: braindl.training.train_run each).

include: "common/pifstudy.smk"


if PIF["tasks"]:

    localrules:
        pif_subset,
        pif_table,
        pif_figure,


    wildcard_constraints:
        family="|".join(pifstudy.FAMILIES),


    rule pif_subset:
        input:
            split=lambda wc: split_path(wc.split, wc.task),
        output:
            pifstudy.subset_path(RESULTS, "{task}", "{size}", "{split}"),
        params:
            fraction=lambda wc: int(wc.size) / 100,
            seed=lambda wc: PIF["seed"] + int(wc.split),
            code=script_code("pif_subset.py"),
        log:
            f"{RESULTS}/pifstudy/logs/task-{{task}}_size-{{size}}_split-{{split}}_subset.log",
        priority: TRAIN_PRIORITY
        conda:
            ENV
        script:
            "../workflow_scripts/pif_subset.py"


    rule pif_search:
        # the random searches of a task, family and training fraction: every split's in one job (unit), or
        # one split's (resources.training_job_runs split or run); each search trains all of its samples
        input:
            data=pack_paths(PIF["variant"], PIF["modality"])["volumes"],
            index=pack_paths(PIF["variant"], PIF["modality"])["index"],
            splits=lambda wc: [pif_split_table(wc.task, wc.size, s) for s in pif_job_splits(wc)],
        output:
            **pifstudy.job_paths(RESULTS, PIF, "{task}", "{family}", "{size}", pif_job_splits()),
        params:
            splits=pif_job_splits,
            runs=lambda wc: canonical({s: pifstudy.search_runs(config["training"], PIF, PIF_PLAN, s, wc.family, wc.size)
                                       for s in pif_job_splits(wc)}),
            code=script_code("pif_search.py"),
        log:
            f"{RESULTS}/pifstudy/logs/task-{{task}}_family-{{family}}_size-{{size}}{PIF_JOB_LABEL}_search.log",
        threads: TRAIN_THREADS
        priority: TRAIN_PRIORITY
        conda:
            ENV
        resources:
            **TRAIN_RESOURCES,
        script:
            "../workflow_scripts/pif_search.py"


    rule pif_table:
        input:
            runs=[r[k] for r in PIF_RUNS for k in ("predictions", "summary")],
        output:
            **{k: captioned(v, "pifstudy", "Thesis study 5 (PIF)") for k, v in pifstudy.table_paths(RESULTS, PIF).items()},
        params:
            runs=PIF_RUNS,
            code=script_code("pif_table.py"),
        log:
            f"{RESULTS}/pifstudy/logs/table.log",
        conda:
            ENV
        script:
            "../workflow_scripts/pif_table.py"


    rule pif_figure:
        input:
            pifstudy.table_paths(RESULTS, PIF)["summary"],
        output:
            captioned(pifstudy.figure_path(RESULTS, PIF, config["figures"]["format"]), "pifstudy", "Thesis study 5 (PIF)"),
        params:
            style=canonical(config["figures"]),
            code=script_code("pif_figure.py"),
        log:
            f"{FIGURES}/logs/pifstudy.log",
        conda:
            ENV
        script:
            "../workflow_scripts/pif_figure.py"
