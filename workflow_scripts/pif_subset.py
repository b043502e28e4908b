from braindl.logs import to_log
from braindl.pifstudy import subset_split

with to_log(snakemake.log):
    subset_split(snakemake.input.split, snakemake.wildcards.task, snakemake.params.fraction, snakemake.params.seed,
                 snakemake.output[0])
