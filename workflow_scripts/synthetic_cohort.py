from braindl.logs import to_log
from braindl.synthetic import run_cohort

with to_log(snakemake.log):
    run_cohort(snakemake.params.settings, snakemake.params.bids_dir, snakemake.params.truth_dir, snakemake.threads)
