from braindl.logs import to_log
from braindl.pretraining import subsample_split

with to_log(snakemake.log):
    subsample_split(snakemake.input.split, snakemake.params.fraction, snakemake.params.seed, snakemake.output[0])
