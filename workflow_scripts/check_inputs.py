from braindl.inputs import run_check
from braindl.logs import to_log

with to_log(snakemake.log):
    run_check(
        snakemake.params.bids_dir,
        snakemake.params.settings,
        snakemake.params.pet_route,
        snakemake.output.manifest,
        snakemake.output.skipped,
        threads=snakemake.threads,
    )
