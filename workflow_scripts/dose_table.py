from braindl.logs import to_log
from braindl.quality import run_quality_table

with to_log(snakemake.log):
    run_quality_table(snakemake.params.runs, snakemake.output[0])
