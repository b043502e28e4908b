from braindl.logs import to_log
from braindl.transfer import run_comparison

with to_log(snakemake.log):
    run_comparison(snakemake.params.runs, snakemake.params.n_boot, snakemake.params.ci, snakemake.output[0])
