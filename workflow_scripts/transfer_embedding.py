from braindl.logs import to_log
from braindl.transfer import run_embedding

with to_log(snakemake.log):
    run_embedding(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.input.index,
        snakemake.input.split,
        snakemake.wildcards.task,
        snakemake.params.out_of_distribution,
        snakemake.output.table,
        snakemake.output.figure,
        snakemake.params.style,
    )
