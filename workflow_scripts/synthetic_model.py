from braindl.logs import to_log
from braindl.synthetic import run_model

with to_log(snakemake.log):
    run_model(snakemake.params.settings, snakemake.output[0])
