# The pretraining stage's constants, paths, settings, checks and input functions (its rules: rules/pretraining.smk).
# ---- 001's pre-training sweep ---------------------------------------------------------------
PRETRAIN = f"{RESULTS}/pretraining"
SIZES = [pretraining.size_label(f) for f in PRE["fractions"]] if PRE["model"] else []


def _check_pretraining():
    for problem in planning.pretraining_problems(config):
        raise WorkflowError(f"config: {problem}")


_check_pretraining()


wildcard_constraints:
    size="[0-9]{3}",
    source="none|[0-9]{3}",


def sweep_split_path(size="{size}", split="{split}"):
    return derivatives.sweep_split(RESULTS, PRE["source_task"], size, split)


def sweep_run_paths(stage, size_or_source, split="{split}", run="{run}"):
    task = PRE["source_task"] if stage == "pretrain" else PRE["target_task"]
    return derivatives.sweep_run(RESULTS, stage, task, XFER["modality"], XFER["variant"], PRE["model"],
                                 size_or_source, split, run)


def sweep_targets():
    if not PRE["model"]:
        return []
    mod, reg = XFER["modality"], XFER["variant"]
    return [derivatives.sweep_table(RESULTS, PRE["target_task"], mod, reg, PRE["model"]),
            derivatives.sweep_figure(RESULTS, PRE["target_task"], mod, reg, PRE["model"], config["figures"]["format"])]


def _finetune_settings():
    return canonical({**arm_settings(PRE["model"]), "freeze": PRE["freeze"]})


# Two runs of the sweep are runs of 000's experiment when its model and tasks are there (same settings, split
# and seed): pre-training on all of a split's training participants is the source task's transfer run, and
# fine-tuning without pre-training the target task's. Those are reused, not trained again.
FULL_SIZE = pretraining.size_label(1.0)
PRE_REUSES_SOURCE, PRE_REUSES_TARGET = planning.sweep_reuse(config)


def sweep_pretrained(size, split, run):
    """The pre-trained model a fine-tuning run starts from."""
    if size == FULL_SIZE and PRE_REUSES_SOURCE:
        return arm_paths(PRE["source_task"], PRE["model"], split, run)["model"]
    return sweep_run_paths("pretrain", size, split, run)["model"]


def sweep_pretrain_split(size, split):
    """The split a pre-training run of ``size`` trained on (all of the split: the transfer experiment's)."""
    if size == FULL_SIZE and PRE_REUSES_SOURCE:
        return split_path(split, PRE["source_task"])
    return sweep_split_path(size, split)


def _sweep_runs():
    out = []
    for src in ["none", *SIZES]:
        for s in SPLIT_IDS:
            for r in RUN_IDS:
                files = (arm_paths(PRE["target_task"], PRE["model"], s, r) if src == "none" and PRE_REUSES_TARGET
                         else sweep_run_paths("finetune", src, s, r))
                out.append(dict(source=src, split=s, run=r, **files,
                                pretrain_split=None if src == "none" else sweep_pretrain_split(src, s)))
    return out
