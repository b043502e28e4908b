from braindl.logs import to_log
from braindl.synthetic import run_subject

with to_log(snakemake.log):
    run_subject(
        snakemake.params.settings,
        snakemake.input.model,
        snakemake.input.disease,
        snakemake.wildcards.subject,
        snakemake.params.sessions,
        snakemake.params.bids_dir,
        snakemake.params.truth_dir,
        threads=snakemake.threads,
    )
