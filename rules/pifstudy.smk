# 004 study 5 (braindl.pifstudy): a VGG-like baseline against its patch-individual-filter (PIF) version,
# each split with the thesis' random hyperparameter search on the validation set, on all and on a
# subset of each split's training participants. One job per search trains its samples
# (braindl.pifstudy.run_search: braindl.training.train_run each).

# ---- plan ------------------------------------------------------------------------------------------
PIF_PLAN = pifstudy.study_plan(PIF, len(SPLIT_IDS)) if PIF["tasks"] else None
PIF_RUNS = pifstudy.planned_runs(RESULTS, PIF, PIF_PLAN) if PIF["tasks"] else []


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
        conda:
            ENV
        script:
            "../workflow_scripts/pif_subset.py"


    rule pif_search:
        # one random search per job: every sample of a split, family and training fraction
        input:
            data=pack_paths(PIF["variant"], PIF["modality"])["volumes"],
            index=pack_paths(PIF["variant"], PIF["modality"])["index"],
            split=lambda wc: (split_path(wc.split, wc.task) if wc.size == "100"
                              else pifstudy.subset_path(RESULTS, wc.task, wc.size, wc.split)),
        output:
            **pifstudy.search_paths(RESULTS, PIF, "{task}", "{family}", "{size}", "{split}"),
        params:
            runs=lambda wc: canonical(pifstudy.search_runs(config["training"], PIF, PIF_PLAN, wc.split, wc.family, wc.size)),
            code=script_code("pif_search.py"),
        log:
            f"{RESULTS}/pifstudy/logs/task-{{task}}_family-{{family}}_size-{{size}}_split-{{split}}_search.log",
        threads: TRAIN_THREADS
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
