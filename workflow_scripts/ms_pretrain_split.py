from braindl.logs import to_log
from braindl.msstudy import pretrain_split

with to_log(snakemake.log):
    pretrain_split(snakemake.input.source, snakemake.input.target, snakemake.output[0])
