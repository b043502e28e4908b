from braindl.logs import to_log
from braindl.synthetic import run_session

with to_log(snakemake.log):
    run_session(
        snakemake.params.settings,
        snakemake.input.model,
        snakemake.input.disease,
        snakemake.wildcards.subject,
        snakemake.wildcards.session,
        snakemake.params.bids_dir,
        snakemake.params.truth_dir,
        threads=snakemake.threads,
    )
