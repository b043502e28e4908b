from braindl.logs import to_log
from braindl.pretraining import run_sweep_table

with to_log(snakemake.log):
    run_sweep_table(snakemake.params.runs, snakemake.output[0])
