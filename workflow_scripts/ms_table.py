from braindl.logs import to_log
from braindl.msstudy import run_comparison

with to_log(snakemake.log):
    run_comparison(snakemake.params.runs, snakemake.output.runs, snakemake.output.summary)
