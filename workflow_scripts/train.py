from braindl.logs import to_log
from braindl.training import train_run

with to_log(snakemake.log):
    train_run(
        snakemake.input.data,
        snakemake.input.index,
        snakemake.input.split,
        snakemake.params.get("task") or snakemake.wildcards.task,
        snakemake.params.settings,
        int(snakemake.wildcards.split),
        int(snakemake.params.get("run") or snakemake.wildcards.run),
        {k: snakemake.output[k] for k in ("model", "history", "predictions", "summary")},
        snakemake.params.state_dir,
        pretrained=snakemake.input.get("finetune"),
        threads=snakemake.threads,
        checkpoint_s=snakemake.resources.get("checkpoint_s", 60),
    )
