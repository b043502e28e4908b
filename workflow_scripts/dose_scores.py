from braindl.logs import to_log
from braindl.patches import run_scores

with to_log(snakemake.log):
    run_scores(snakemake.params.rows, snakemake.params.groups, snakemake.params.levels, snakemake.params.scores,
               snakemake.output[0])
