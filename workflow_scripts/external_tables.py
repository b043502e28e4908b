from braindl.external import predictions_table
from braindl.logs import to_log

with to_log(snakemake.log):
    predictions_table(snakemake.params.runs, snakemake.output[0])
