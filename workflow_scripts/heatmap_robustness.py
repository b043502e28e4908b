from braindl.atlas import run_robustness
from braindl.logs import to_log

with to_log(snakemake.log):
    run_robustness(snakemake.params.methods, snakemake.params.top, snakemake.output.pairs, snakemake.output.summary)
