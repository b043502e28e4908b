from braindl.logs import to_log
from braindl.training import RUN_OUTPUTS, train_runs

with to_log(snakemake.log):
    i, o, p = snakemake.input, snakemake.output, snakemake.params
    # the runs of one unit that resources.training_job_runs puts in this job: named lists, one file per run
    train_runs(
        i.data,
        i.index,
        i.split,
        p.get("task") or snakemake.wildcards.task,
        p.settings,
        p.runs,
        {k: o[k] for k in RUN_OUTPUTS},
        pretrained=i.get("finetune"),
        threads=snakemake.threads,
        checkpoint_s=snakemake.resources.get("checkpoint_s", 60),
    )
