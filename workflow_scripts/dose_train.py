from braindl.logs import to_log
from braindl.quality import RUN_OUTPUTS, train_quality_runs

with to_log(snakemake.log):
    # the runs of one backbone and regime that resources.training_job_runs puts in this job: named lists,
    # one file per run
    train_quality_runs(
        dict(zip(map(tuple, snakemake.params.patch_keys), snakemake.input.patches)),
        snakemake.input.scores,
        snakemake.params.runs,
        snakemake.params.settings,
        {k: snakemake.output[k] for k in RUN_OUTPUTS},
        threads=snakemake.threads,
        checkpoint_s=snakemake.resources.get("checkpoint_s", 60),
    )
