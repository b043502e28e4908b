# 001's two-stage transfer sweep (braindl.pretraining): a model of transfer.models is
# pre-trained on pretraining.source_task with a fraction of each split's training
# participants, fine-tuned on pretraining.target_task, and compared with the same
# model fine-tuned without pre-training.
PRE = config["pretraining"]
PRETRAIN = f"{RESULTS}/pretraining"
SIZES = [pretraining.size_label(f) for f in PRE["fractions"]] if PRE["model"] else []


def _check_pretraining():
    if not PRE["model"]:
        return
    if PRE["model"] not in ARMS:
        raise WorkflowError(f"config: pretraining.model {PRE['model']!r} is not one of transfer.models {sorted(ARMS)}")
    if PRE["source_task"] == PRE["target_task"]:
        raise WorkflowError("config: pretraining.source_task and target_task must differ")


_check_pretraining()


wildcard_constraints:
    size="[0-9]{3}",
    source="none|[0-9]{3}",


def _sweep_name(stage, task, size_or_source, split, run):
    mod, reg, arm = XFER["modality"], XFER["variant"], PRE["model"]
    entity = "size" if stage == "pretrain" else "from"
    return (f"{PRETRAIN}/model-{arm}/{stage}/task-{task}_{mod}_desc-{reg}_model-{arm}_{entity}-{size_or_source}"
            f"_split-{split}_run-{run}")


def sweep_split_path(size="{size}", split="{split}"):
    return f"{PRETRAIN}/splits/task-{PRE['source_task']}_size-{size}_split-{split}_split.tsv"


def sweep_run_paths(stage, size_or_source, split="{split}", run="{run}"):
    task = PRE["source_task"] if stage == "pretrain" else PRE["target_task"]
    pre = _sweep_name(stage, task, size_or_source, split, run)
    return {k: f"{pre}_{k}.{e}" for k, e in
            (("model", "pt"), ("history", "tsv"), ("predictions", "tsv"), ("summary", "json"))}


def sweep_targets():
    if not PRE["model"]:
        return []
    mod, reg = XFER["modality"], XFER["variant"]
    return [f"{PRETRAIN}/task-{PRE['target_task']}_{mod}_desc-{reg}_model-{PRE['model']}_sweep.tsv",
            f"{FIGURES}/pretraining_task-{PRE['target_task']}_{mod}_desc-{reg}_model-{PRE['model']}_sweep."
            f"{config['figures']['format']}"]


def _finetune_settings():
    return canonical({**arm_settings(PRE["model"]), "freeze": PRE["freeze"]})


def _sweep_runs():
    return [dict(source=src, split=s, run=r, **sweep_run_paths("finetune", src, s, r),
                 pretrain_split=None if src == "none" else sweep_split_path(src, s))
            for src in ["none", *SIZES] for s in SPLIT_IDS for r in RUN_IDS]


if PRE["model"]:

    rule sweep_split:
        input:
            split=lambda wc: split_path(wc.split, PRE["source_task"]),
        output:
            sweep_split_path(),
        params:
            fraction=lambda wc: int(wc.size) / 100,
            seed=lambda wc: config["splits"]["seed"] + int(wc.split),
            code=code_hash("pretraining"),
        log:
            f"{PRETRAIN}/logs/size-{{size}}_split-{{split}}.log",
        conda:
            ENV
        script:
            "../workflow_scripts/sweep_split.py"


    rule pretrain:
        input:
            unpack(lambda wc: {**arm_files(PRE["source_task"], PRE["model"], wc.split),
                               "split": sweep_split_path(wc.size, wc.split)}),
        output:
            **sweep_run_paths("pretrain", "{size}"),
        params:
            settings=lambda wc: arm_settings(PRE["model"]),
            task=PRE["source_task"],
            state_dir=lambda wc, output: str(Path(output.model).with_suffix("")) + "_state",
            code=code_hash("training"),
        log:
            f"{PRETRAIN}/logs/pretrain_size-{{size}}_split-{{split}}_run-{{run}}.log",
        threads: config["resources"]["training_threads"]
        conda:
            ENV
        resources:
            mem_mb=6000,
            gpu=config["resources"]["training_gpus"],
        script:
            "../workflow_scripts/train.py"


    rule finetune:
        input:
            unpack(lambda wc: {**arm_files(PRE["target_task"], PRE["model"], wc.split),
                               **({} if wc.source == "none" else
                                  {"finetune": sweep_run_paths("pretrain", wc.source, wc.split, wc.run)["model"]})}),
        output:
            **sweep_run_paths("finetune", "{source}"),
        params:
            settings=lambda wc: _finetune_settings(),
            task=PRE["target_task"],
            state_dir=lambda wc, output: str(Path(output.model).with_suffix("")) + "_state",
            code=code_hash("training"),
        log:
            f"{PRETRAIN}/logs/finetune_from-{{source}}_split-{{split}}_run-{{run}}.log",
        threads: config["resources"]["training_threads"]
        conda:
            ENV
        resources:
            mem_mb=6000,
            gpu=config["resources"]["training_gpus"],
        script:
            "../workflow_scripts/train.py"


    rule sweep_table:
        input:
            runs=[p[k] for p in _sweep_runs() for k in ("predictions", "summary")],
            splits=[sweep_split_path(z, s) for z in SIZES for s in SPLIT_IDS],
        output:
            sweep_targets()[0],
        params:
            runs=_sweep_runs(),
            code=code_hash("pretraining"),
        log:
            f"{PRETRAIN}/logs/sweep_table.log",
        conda:
            ENV
        script:
            "../workflow_scripts/sweep_table.py"


    rule sweep_figure:
        input:
            sweep_targets()[0],
        output:
            sweep_targets()[1],
        params:
            style=canonical(config["figures"]),
            code=code_hash("pretraining"),
        log:
            f"{FIGURES}/logs/pretraining_sweep.log",
        conda:
            ENV
        script:
            "../workflow_scripts/sweep_figure.py"
